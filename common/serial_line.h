/*
 * Serial line settings as plugfs shows them (`115200 8N1`) and as the two
 * kinds of USB serial chips want them: the CDC-ACM LINE_CODING structure
 * and the FTDI baud-rate divisor and SET_DATA value.  Pure functions, so
 * the unit tests can check them against the documents they come from.
 */
#ifndef PLUGFS_SERIAL_LINE_H
#define PLUGFS_SERIAL_LINE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct serial_line {
	uint32_t rate;	   /* bits per second, >= 1 */
	uint8_t data_bits; /* 5 to 8 */
	char parity;	   /* 'N'one, 'O'dd, 'E'ven, 'M'ark, 'S'pace */
	uint8_t half_stop; /* stop bits times two: 2 (1), 3 (1.5, only with 5 data bits), 4 (2) */
};

/* The longest text serial_line_format() writes, NUL excluded: "4294967295 8N1.5". */
#define SERIAL_LINE_TEXT_MAX 16

/*
 * Parses `RATE DATA PARITY STOP` written as `115200 8N1`, `300 7E2`,
 * `9600 5N1.5`: a decimal rate without sign or leading zero, one space,
 * data bits 5-8, parity N/O/E/M/S (upper case), stop bits 1, 1.5 or 2; an
 * optional final newline.  Nothing else.  0 or -EINVAL.
 */
int serial_line_parse(const char *text, size_t len, struct serial_line *out);

/* Writes the text form (no newline) into buf; returns its length. */
size_t serial_line_format(const struct serial_line *l, char *buf, size_t cap);

/*
 * CDC PSTN 1.2 section 6.3.11 LINE_CODING: dwDTERate (LE32), bCharFormat
 * (0 = 1, 1 = 1.5, 2 = 2 stop bits), bParityType (0 N, 1 O, 2 E, 3 M, 4 S),
 * bDataBits.  serial_line_from_cdc returns -EINVAL for values plugfs cannot
 * show (rate 0, data bits other than 5-8, unknown codes).
 */
#define CDC_LINE_CODING_LEN 7
void serial_line_to_cdc(const struct serial_line *l, uint8_t out[CDC_LINE_CODING_LEN]);
int serial_line_from_cdc(const uint8_t in[CDC_LINE_CODING_LEN], struct serial_line *l);

/*
 * FTDI baud-rate divisor, as FTDI's AN232B-05 and AN_120 describe it: the
 * chip divides a 3 MHz reference (FT232BM/R, FT2232C/D, FT-X: 48 MHz / 16)
 * or, on the hi-speed H chips, 12 MHz (120 MHz / 10) by an integer of 14
 * bits plus a fraction in eighths.  The fraction goes in bits 14-16 with
 * the code 0 = .0, 1 = .5, 2 = .25, 3 = .125, 4 = .375, 5 = .625, 6 = .75,
 * 7 = .875; bit 17 selects the 12 MHz reference.  Divisors below 2 are
 * only 1 (encoded 0: the full reference rate, 3 MBd) and 1.5 (encoded 1:
 * 2 MBd).  The SET_BAUD_RATE request carries the low 16 bits in wValue and
 * the rest in wIndex (shifted into its high byte on multi-port and H chips).
 *
 * `hispeed`: an H chip; it uses the 12 MHz reference from 1200 Bd up and
 * the 3 MHz one below, as Linux's ftdi_sio does.  Returns 0 with the
 * encoded divisor and the rate the chip really makes (rounded down), or
 * -EINVAL when no divisor comes within 3% of `rate`.
 */
int ftdi_baud_divisor(uint32_t rate, bool hispeed, uint32_t *divisor, uint32_t *actual);

/*
 * The wValue of FTDI SIO_SET_DATA: data bits in bits 0-7, parity in 8-10
 * (0 N, 1 O, 2 E, 3 M, 4 S), stop bits in 11-13 (0 = 1, 1 = 1.5, 2 = 2),
 * bit 14 a break.  The chips do 7 or 8 data bits only: -EINVAL otherwise.
 */
int ftdi_data_value(const struct serial_line *l, bool brk, uint16_t *value);

#endif
