/* The whole public C API of starmoe in one include: errors, model configs, the engine, models,
 * runs, the optimizer, the drivers (generation, evaluation, benchmark), training, traces, the
 * tokenizer, pipeline schedules and FP8. The CLI and the examples use only this. */
#ifndef STARMOE_STARMOE_H
#define STARMOE_STARMOE_H

#include <starmoe/export.h>
#include <starmoe/error.h>
#include <starmoe/config.h>
#include <starmoe/engine.h>
#include <starmoe/model.h>
#include <starmoe/run.h>
#include <starmoe/optimizer.h>
#include <starmoe/drivers.h>
#include <starmoe/train.h>
#include <starmoe/trace.h>
#include <starmoe/tokenizer.h>
#include <starmoe/schedule.h>
#include <starmoe/fp8.h>

#endif
