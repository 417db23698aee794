/* The phases of a task (forward, backward for input, backward for weight, optimizer,
 * communication, io): one table of their names as traces write them (the "cat" of a Chrome
 * slice) and of the colour every view draws them in (DOT export, Paje, HTML report), and which
 * of them the summary counts as compute or communication. */
#ifndef STARMOE_BASE_PHASE_H
#define STARMOE_BASE_PHASE_H

typedef enum sm_phase {
    SM_FORWARD, SM_BACKWARD_INPUT, SM_BACKWARD_WEIGHT, SM_OPTIMIZER, SM_COMM, SM_IO
} sm_phase;

#define SM_NPHASES (SM_IO + 1)

typedef enum sm_phase_kind {
    SM_PHASE_COMPUTE, SM_PHASE_COMMUNICATION, SM_PHASE_OTHER
} sm_phase_kind;

typedef struct sm_phase_info {
    const char *name;            /* as in traces: "forward", "backward-input", ... */
    const char *color;           /* "#rrggbb" */
    sm_phase_kind kind;
} sm_phase_info;

/* The entry of phase p; out of range: an entry named "?" in SM_PHASE_UNKNOWN_COLOR. */
const sm_phase_info *sm_phase_info_of(sm_phase p);
const char *sm_phase_name(sm_phase p);
/* The phase named `name` (a trace's category); -1 when no phase has that name. */
int sm_phase_by_name(const char *name);

/* The colour of what is not a phase (an unknown category). */
#define SM_PHASE_UNKNOWN_COLOR "#808080"

#endif
