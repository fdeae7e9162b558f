/*
 * The USB Printer Class (1.1): its three class requests and the parsing of
 * their answers, shared by the printer driver (drivers/printer.c), the
 * printer models (tests/emu/model_printer.c) and the unit tests.  Pure
 * functions only: nothing here touches a device.
 *
 *   GET_DEVICE_ID   A1 00 wValue=config index, wIndex=interface<<8 | alt
 *                   IN: u16 big-endian length (including those 2 bytes),
 *                   then the IEEE 1284 device ID text ("MFG:...;MDL:...;").
 *   GET_PORT_STATUS A1 01 wValue=0, wIndex=interface, 1 byte IN: the bits
 *                   of a parallel port's status register.
 *   SOFT_RESET      21 02 wValue=0, wIndex=interface.  The 1.0 spec wrote
 *                   bmRequestType 23 (recipient "other") by mistake; Linux
 *                   usblp still sends that, so old printers may want it.
 */
#ifndef PLUGFS_PRINTER_CLASS_H
#define PLUGFS_PRINTER_CLASS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

enum printer_request {
	PRINTER_GET_DEVICE_ID = 0,
	PRINTER_GET_PORT_STATUS = 1,
	PRINTER_SOFT_RESET = 2,
};

#define PRINTER_RT_IN	      0xa1 /* class, interface, device-to-host */
#define PRINTER_RT_OUT	      0x21 /* class, interface, host-to-device */
#define PRINTER_RT_OUT_OTHER  0x23 /* class, "other": the 1.0 spec's SOFT_RESET */
#define PRINTER_DEVICE_ID_MAX 1024 /* what we ask for; Linux usblp asks the same */

/* GET_PORT_STATUS bits (IEEE 1284 status lines); the others are reserved. */
#define PRINTER_PAPER_EMPTY 0x20
#define PRINTER_SELECTED    0x10
#define PRINTER_NOT_ERROR   0x08

enum printer_state {
	PRINTER_OK,
	PRINTER_PAPER_OUT,
	PRINTER_OFFLINE,
	PRINTER_ERROR,
};

/*
 * The state a port status byte says, with Linux usblp's precedence: not
 * selected (offline) wins over paper empty, which wins over an error.
 */
static inline enum printer_state printer_state_of(uint8_t status)
{
	if (!(status & PRINTER_SELECTED))
		return PRINTER_OFFLINE;
	if (status & PRINTER_PAPER_EMPTY)
		return PRINTER_PAPER_OUT;
	if (!(status & PRINTER_NOT_ERROR))
		return PRINTER_ERROR;
	return PRINTER_OK;
}

/* The word the `status` file shows. */
static inline const char *printer_state_name(enum printer_state s)
{
	static const char *const names[] = {
	    [PRINTER_OK] = "ok",
	    [PRINTER_PAPER_OUT] = "paper-out",
	    [PRINTER_OFFLINE] = "offline",
	    [PRINTER_ERROR] = "error",
	};
	return (size_t)s < sizeof(names) / sizeof(names[0]) ? names[s] : "error";
}

/*
 * Where the ID text sits in a GET_DEVICE_ID answer of `received` bytes:
 * sets *off and returns the text's length.  The length field is trusted
 * only when it is at least 2 and fits in what arrived; otherwise
 * everything after the field is the text and *bad is set.  An answer
 * shorter than the field holds no text (and is bad unless empty).
 * Trailing NUL bytes (padding some devices count in the length) are not
 * part of the text.
 */
static inline size_t printer_device_id_span(const uint8_t *buf, size_t received, size_t *off, bool *bad)
{
	size_t len;

	*off = 0;
	*bad = false;
	if (received < 2) {
		*bad = received != 0;
		return 0;
	}
	*off = 2;
	len = (size_t)buf[0] << 8 | buf[1];
	if (len < 2 || len > received) {
		*bad = true;
		len = received;
	}
	len -= 2;
	while (len > 0 && buf[2 + len - 1] == '\0')
		len--;
	return len;
}

/*
 * The `device_id` file's content: the ID text and a newline, or nothing
 * when the ID is empty.  Writes at most cap bytes (the text is cut to
 * leave room for the newline); returns the length.
 */
static inline size_t printer_device_id_text(const uint8_t *buf, size_t received, char *out, size_t cap,
					    bool *bad)
{
	size_t off, len = printer_device_id_span(buf, received, &off, bad);

	if (len == 0 || cap == 0)
		return 0;
	if (len > cap - 1)
		len = cap - 1;
	memcpy(out, buf + off, len);
	out[len] = '\n';
	return len + 1;
}

#endif
