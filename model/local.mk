# model/: config-derived parameters, activations, block graph builders, runs, eval and bench.
libstarmoe_core_la_SOURCES += model/model.h model/engine.c model/model.c model/params.c \
	model/activations.c model/attention_block.c model/ffn_block.c model/mtp.c model/linear.c model/step.c model/pipeline.c model/stage_cut.c model/eval.c model/bench.c \
	 model/optimizer.c model/generate.c model/generate_text.c model/decode.c model/decode.h \
	model/sample.c model/sample.h model/speculative.c model/speculative.h model/lr_schedule.c model/train.c model/train_setup.c model/train_ckpt.c model/trainer.h \
	model/train_resume.c model/parallel.c model/parallel.h model/data_parallel.c \
	model/expert_parallel.c model/comm.c model/comm.h model/rank_trace.c model/rank_trace.h \
	model/convert.c
starmoeinclude_HEADERS += include/starmoe/starmoe.h include/starmoe/engine.h \
	include/starmoe/model.h include/starmoe/run.h include/starmoe/optimizer.h \
	include/starmoe/drivers.h include/starmoe/train.h
libstarmoe_core_la_SOURCES += model/config.c model/config.h

check_PROGRAMS += tests/test_fixture tests/test_eval_mtp tests/test_fp8_train
TESTS += tests/test_fixture tests/test_eval_mtp tests/test_fp8_train
tests_test_fixture_LDADD = $(TEST_LIBS)
tests_test_eval_mtp_LDADD = $(TEST_LIBS)
tests_test_fp8_train_LDADD = $(TEST_LIBS)

# Inference over MLA's latent cache: the absorbed kernel, decode steps against the full forward,
# generation with and without the cache.
check_PROGRAMS += tests/test_decode tests/test_speculative
TESTS += tests/test_decode tests/test_speculative
tests_test_decode_LDADD = $(TEST_LIBS)
tests_test_speculative_LDADD = $(TEST_LIBS)

check_PROGRAMS += tests/test_train_step tests/test_pipeline tests/test_build_errors
TESTS += tests/test_train_step tests/test_pipeline tests/test_build_errors
tests_test_train_step_LDADD = $(TEST_LIBS)
tests_test_pipeline_LDADD = $(TEST_LIBS)
tests_test_build_errors_LDADD = $(TEST_LIBS)

# Faults around run folders end to end (kill -9 and resume, the lock, resume checks, forged
# checkpoints), with a tool that reseals a forged checkpoint's manifest.
check_PROGRAMS += tests/ckpt_reseal
tests_ckpt_reseal_LDADD = $(TEST_LIBS)
# the tool calls the library only through testutil, which comes last on the link line
tests_ckpt_reseal_LDFLAGS = $(AM_LDFLAGS) -Wl,--no-as-needed
TESTS += tests/test_resume_faults.sh
EXTRA_DIST += tests/test_resume_faults.sh

# Launching under mpirun: layout checks on every rank, the start-up hash, a failing rank stopping
# all, a silent peer timed out (tests/mpi_idle), one rank unchanged.
TESTS += tests/test_mpi.sh tests/test_mpi_faults.sh
EXTRA_DIST += tests/test_mpi.sh tests/test_mpi_faults.sh tests/mpi.sh tests/browser.sh
# Rank traces under mpirun: one file per rank, messages, clocks, merge and per-rank summary.
TESTS += tests/test_mpi_trace.sh
EXTRA_DIST += tests/test_mpi_trace.sh
# Pipeline stages on MPI ranks: every policy against the one-rank run, resume, bad layouts.
TESTS += tests/test_mpi_pipeline.sh
EXTRA_DIST += tests/test_mpi_pipeline.sh tests/pipeline_runs.sh tests/rank_traces.py
# Pipeline ranks with expert and data parallelism on 4 ranks: policies, resume, trace, faults.
TESTS += tests/test_mpi_pipeline_ep.sh
EXTRA_DIST += tests/test_mpi_pipeline_ep.sh
# Gradients summed over data-parallel ranks in buckets: one message each way per bucket.
TESTS += tests/test_mpi_buckets.sh
EXTRA_DIST += tests/test_mpi_buckets.sh
check_PROGRAMS += tests/mpi_idle
tests_mpi_idle_LDADD = $(MPI_LIBS)
# Whether two checkpoints hold the same tensors bit for bit, whatever their sharding.
check_PROGRAMS += tests/ckpt_same
tests_ckpt_same_LDADD = $(TEST_LIBS)
