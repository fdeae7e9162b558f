/*
 * Every model the harness knows, by the name given to --model.  Adding a
 * model = one new model_NAME.c plus one line here.
 */
#include "emu.h"

#include <string.h>

const struct emu_model *const emu_models[] = {
    &emu_model_loopback, &emu_model_stall, &emu_model_hang, &emu_model_kbound, &emu_model_twin, NULL,
};

const struct emu_model *emu_model_find(const char *name)
{
	for (unsigned i = 0; emu_models[i] != NULL; i++)
		if (strcmp(emu_models[i]->name, name) == 0)
			return emu_models[i];
	return NULL;
}
