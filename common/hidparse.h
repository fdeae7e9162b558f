/*
 * A HID report descriptor parser (HID 1.11, section 6.2.2): from the raw
 * bytes a device returns for GET_DESCRIPTOR(Report), the list of reports
 * it sends and takes -- type, report ID and length -- which is what the hid
 * driver needs to name its feature files and check report lengths.  Usages
 * are walked over, not interpreted.
 *
 * It handles short and long items, the global state (Report ID, Report
 * Size, Report Count...) with Push and Pop, and nested collections.  It
 * trusts nothing: a truncated item, a Pop without a Push, a stack overflow,
 * an unbalanced collection, a Report ID 0 or an absurd size is an error
 * with a reason, never a read past the buffer.  No libusb, no allocation.
 */
#ifndef PLUGFS_HIDPARSE_H
#define PLUGFS_HIDPARSE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum hid_report_type {
	HID_REPORT_INPUT = 1, /* the numbering of GET_REPORT's wValue high byte */
	HID_REPORT_OUTPUT = 2,
	HID_REPORT_FEATURE = 3,
};

/* As Linux: Push nests 4 deep; a report carries at most this many bytes of data. */
#define HIDPARSE_STACK_DEPTH	  4
#define HIDPARSE_MAX_COLLECTIONS  64
#define HIDPARSE_MAX_REPORT_BYTES 4096
/* Every (type, ID) pair could be there once: 3 types x 255 IDs + unnumbered. */
#define HIDPARSE_MAX_REPORTS (3 * 256)

struct hid_report {
	uint8_t type; /* enum hid_report_type */
	uint8_t id;   /* 0 when the descriptor has no Report ID items */
	uint32_t bits;
};

struct hid_desc_info {
	/* Reports carry their ID as the first byte (the descriptor has Report ID items). */
	bool numbered;
	unsigned nreports;
	struct hid_report reports[HIDPARSE_MAX_REPORTS]; /* in order of first appearance */
};

/*
 * Parses `len` bytes of report descriptor into *info.  Returns 0 or
 * -EINVAL; *why (if not NULL) says what was wrong.
 */
int hidparse(const uint8_t *desc, size_t len, struct hid_desc_info *info, const char **why);

/* The report of this type and ID, or NULL. */
const struct hid_report *hidparse_find(const struct hid_desc_info *info, uint8_t type, uint8_t id);

/* Bytes of data in a report, the ID byte not counted. */
static inline size_t hid_report_bytes(const struct hid_report *r)
{
	return (r->bits + 7) / 8;
}

/* The longest report of `type` on the wire, ID byte included; 0 if there is none. */
size_t hidparse_max_len(const struct hid_desc_info *info, uint8_t type);

#endif
