/*
 * Serial line settings (see serial_line.h).
 */
#include "serial_line.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "proto.h"

static const char parities[] = "NOEMS"; /* index = CDC bParityType = FTDI parity code */

int serial_line_parse(const char *text, size_t len, struct serial_line *out)
{
	struct serial_line l = {0};
	uint64_t rate = 0;
	size_t i = 0;
	const char *p;

	if (len > 0 && text[len - 1] == '\n')
		len--;
	if (len == 0 || text[0] < '1' || text[0] > '9')
		return -EINVAL;
	for (; i < len && text[i] >= '0' && text[i] <= '9'; i++) {
		rate = rate * 10 + (uint64_t)(text[i] - '0');
		if (rate > UINT32_MAX)
			return -EINVAL;
	}
	l.rate = (uint32_t)rate;
	/* " 8N1" or " 8N1.5" or " 8N2" must be all that is left. */
	if (len - i != 4 && len - i != 6)
		return -EINVAL;
	if (text[i] != ' ' || text[i + 1] < '5' || text[i + 1] > '8')
		return -EINVAL;
	l.data_bits = (uint8_t)(text[i + 1] - '0');
	if (text[i + 2] == '\0' || (p = strchr(parities, text[i + 2])) == NULL)
		return -EINVAL;
	l.parity = *p;
	if (len - i == 4 && text[i + 3] == '1')
		l.half_stop = 2;
	else if (len - i == 4 && text[i + 3] == '2')
		l.half_stop = 4;
	else if (len - i == 6 && memcmp(text + i + 3, "1.5", 3) == 0 && l.data_bits == 5)
		l.half_stop = 3;
	else
		return -EINVAL;
	*out = l;
	return 0;
}

size_t serial_line_format(const struct serial_line *l, char *buf, size_t cap)
{
	const char *stop = l->half_stop == 3 ? "1.5" : l->half_stop == 4 ? "2" : "1";
	int n = snprintf(buf, cap, "%u %u%c%s", (unsigned)l->rate, (unsigned)l->data_bits, l->parity, stop);

	if (n < 0)
		return 0;
	return (size_t)n < cap ? (size_t)n : cap > 0 ? cap - 1 : 0;
}

void serial_line_to_cdc(const struct serial_line *l, uint8_t out[CDC_LINE_CODING_LEN])
{
	const char *p = strchr(parities, l->parity);

	put_le32(out, l->rate);
	out[4] = (uint8_t)(l->half_stop - 2); /* 2, 3, 4 -> 0, 1, 2 */
	out[5] = (uint8_t)(p != NULL ? p - parities : 0);
	out[6] = l->data_bits;
}

int serial_line_from_cdc(const uint8_t in[CDC_LINE_CODING_LEN], struct serial_line *l)
{
	uint32_t rate = get_le32(in);

	if (rate == 0 || in[4] > 2 || in[5] > 4 || in[6] < 5 || in[6] > 8 || (in[4] == 1 && in[6] != 5))
		return -EINVAL;
	l->rate = rate;
	l->half_stop = (uint8_t)(in[4] + 2);
	l->parity = parities[in[5]];
	l->data_bits = in[6];
	return 0;
}

/* AN232B-05: the code for a fraction of k/8 (k = 0..7). */
static const uint8_t ftdi_frac_code[8] = {0, 3, 2, 4, 1, 5, 6, 7};

/* Largest divisor in eighths: 14 integer bits and 7/8. */
#define FTDI_DIV8_MAX ((0x3fffu << 3) | 7)

int ftdi_baud_divisor(uint32_t rate, bool hispeed, uint32_t *divisor, uint32_t *actual)
{
	bool clk12 = hispeed && rate >= 1200;
	uint64_t ref = clk12 ? 12000000 : 3000000;
	uint64_t div8, real;
	uint32_t enc;

	if (rate == 0)
		return -EINVAL;
	div8 = (8 * ref + rate / 2) / rate;
	if (div8 < 16) {
		/* Below 2 only 1 and 1.5 exist: take the nearest of 1, 1.5 and 2. */
		div8 = div8 <= 9 ? 8 : div8 <= 13 ? 12 : 16;
	}
	if (div8 > FTDI_DIV8_MAX)
		return -EINVAL;
	if (div8 == 8)
		enc = 0;
	else if (div8 == 12)
		enc = 1;
	else
		enc = (uint32_t)(div8 >> 3) | (uint32_t)ftdi_frac_code[div8 & 7] << 14;
	if (clk12)
		enc |= 1u << 17;
	real = 8 * ref / div8;
	if ((real > rate ? real - rate : rate - real) * 100 > 3 * (uint64_t)rate)
		return -EINVAL;
	*divisor = enc;
	*actual = (uint32_t)real;
	return 0;
}

int ftdi_data_value(const struct serial_line *l, bool brk, uint16_t *value)
{
	const char *p = strchr(parities, l->parity);

	if ((l->data_bits != 7 && l->data_bits != 8) || p == NULL || l->parity == '\0' || l->half_stop < 2 ||
	    l->half_stop > 4)
		return -EINVAL;
	*value =
	    (uint16_t)(l->data_bits | (p - parities) << 8 | (l->half_stop - 2) << 11 | (brk ? 1 << 14 : 0));
	return 0;
}
