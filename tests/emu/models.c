/*
 * Every model the harness knows, by the name given to --model.  Adding a
 * model = one new model_NAME.c plus one line here.
 */
#include "emu.h"

#include <string.h>

const struct emu_model *const emu_models[] = {
    &emu_model_loopback,
    &emu_model_stall,
    &emu_model_hang,
    &emu_model_kbound,
    &emu_model_twin,
    &emu_model_null,
    /* Printers: model_printer.c. */
    &emu_model_printer_zh380,
    &emu_model_printer_slow,
    &emu_model_printer_offline,
    &emu_model_printer_error,
    &emu_model_printer_dymo,
    &emu_model_printer_ql800,
    &emu_model_printer_badid,
    /* HID: model_hid.c. */
    &emu_model_thermo,
    &emu_model_keypad,
    &emu_model_keypad_out,
    /* Disks: model_disk.c. */
    &emu_model_disk,
    &emu_model_disk_4k,
    &emu_model_disk_2lun,
    &emu_model_disk_stall,
    &emu_model_disk_phase,
    &emu_model_disk_nomedium,
    &emu_model_disk_ro,
    &emu_model_disk_bad,
    &emu_model_disk_120k,
    /* Serial: model_serial.c. */
    &emu_model_acm,
    &emu_model_ft232r,
    /* Webcams: model_uvc.c. */
    &emu_model_c270,
    &emu_model_bulkcam,
    /* Instruments: model_usbtmc.c. */
    &emu_model_tmc_ds1054z,
    &emu_model_tmc_pm16,
    &emu_model_tmc_liar,
    &emu_model_tmc_plain,
    /* IPP over USB, eSCL: model_escl.c. */
    &emu_model_escl,
    &emu_model_escl_garbage,
    &emu_model_escl_liar,
    /* Still image: model_ptp.c. */
    &emu_model_camera,
    &emu_model_camera_liar,
    NULL,
};

const struct emu_model *emu_model_find(const char *name)
{
	for (unsigned i = 0; emu_models[i] != NULL; i++)
		if (strcmp(emu_models[i]->name, name) == 0)
			return emu_models[i];
	return NULL;
}
