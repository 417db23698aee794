/* The phase table (base/phase.h). */
#include "base/phase.h"

#include <string.h>

static const sm_phase_info sm_phases[SM_NPHASES] = {
    [SM_FORWARD] = {"forward", "#add8e6", SM_PHASE_COMPUTE},
    [SM_BACKWARD_INPUT] = {"backward-input", "#fa8072", SM_PHASE_COMPUTE},
    [SM_BACKWARD_WEIGHT] = {"backward-weight", "#ffa500", SM_PHASE_COMPUTE},
    [SM_OPTIMIZER] = {"optimizer", "#98fb98", SM_PHASE_COMPUTE},
    [SM_COMM] = {"communication", "#dda0dd", SM_PHASE_COMMUNICATION},
    [SM_IO] = {"io", "#bebebe", SM_PHASE_OTHER},
};

static const sm_phase_info sm_no_phase = {"?", SM_PHASE_UNKNOWN_COLOR, SM_PHASE_OTHER};

const sm_phase_info *sm_phase_info_of(sm_phase p)
{
    return (unsigned)p < SM_NPHASES ? &sm_phases[p] : &sm_no_phase;
}

const char *sm_phase_name(sm_phase p) { return sm_phase_info_of(p)->name; }

int sm_phase_by_name(const char *name)
{
    for (int i = 0; i < SM_NPHASES; i++)
        if (!strcmp(name, sm_phases[i].name)) return i;
    return -1;
}
