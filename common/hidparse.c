/*
 * HID report descriptor parser (see hidparse.h).  Item layout from HID 1.11
 * section 6.2.2.2: a prefix byte bTag(4) bType(2) bSize(2), then 0, 1, 2 or
 * 4 data bytes (bSize 3 means 4); prefix 0xFE starts a long item with its
 * own data size byte and tag byte.  The limits on sizes and nesting follow
 * what Linux's hid-core accepts, so a descriptor that works there works here.
 */
#include "hidparse.h"

#include <errno.h>
#include <string.h>

enum item_type { ITEM_MAIN = 0, ITEM_GLOBAL = 1, ITEM_LOCAL = 2, ITEM_RESERVED = 3 };

enum main_tag {
	MAIN_INPUT = 0x8,
	MAIN_OUTPUT = 0x9,
	MAIN_COLLECTION = 0xa,
	MAIN_FEATURE = 0xb,
	MAIN_END_COLLECTION = 0xc,
};

enum global_tag {
	GLOBAL_USAGE_PAGE = 0x0,
	GLOBAL_LOGICAL_MIN = 0x1,
	GLOBAL_LOGICAL_MAX = 0x2,
	GLOBAL_PHYSICAL_MIN = 0x3,
	GLOBAL_PHYSICAL_MAX = 0x4,
	GLOBAL_UNIT_EXPONENT = 0x5,
	GLOBAL_UNIT = 0x6,
	GLOBAL_REPORT_SIZE = 0x7,
	GLOBAL_REPORT_ID = 0x8,
	GLOBAL_REPORT_COUNT = 0x9,
	GLOBAL_PUSH = 0xa,
	GLOBAL_POP = 0xb,
};

#define LONG_ITEM_PREFIX 0xfe
/* Linux's limits: a field of at most 256 bits, at most HID_MAX_USAGES of them. */
#define MAX_REPORT_SIZE	 256
#define MAX_REPORT_COUNT 12288

/* The part of the global state that decides report layout. */
struct globals {
	uint32_t report_size;
	uint32_t report_count;
	uint8_t report_id;
};

static int fail(const char **why, const char *reason)
{
	if (why != NULL)
		*why = reason;
	return -EINVAL;
}

static uint32_t item_value(const uint8_t *p, size_t n)
{
	uint32_t v = 0;

	for (size_t i = 0; i < n; i++)
		v |= (uint32_t)p[i] << (8 * i);
	return v;
}

const struct hid_report *hidparse_find(const struct hid_desc_info *info, uint8_t type, uint8_t id)
{
	for (unsigned i = 0; i < info->nreports; i++)
		if (info->reports[i].type == type && info->reports[i].id == id)
			return &info->reports[i];
	return NULL;
}

size_t hidparse_max_len(const struct hid_desc_info *info, uint8_t type)
{
	size_t max = 0;

	for (unsigned i = 0; i < info->nreports; i++) {
		const struct hid_report *r = &info->reports[i];
		size_t n = hid_report_bytes(r) + (info->numbered ? 1 : 0);
		if (r->type == type && n > max)
			max = n;
	}
	return max;
}

/* A main item adds report_size * report_count bits to its report. */
static int add_field(struct hid_desc_info *info, uint8_t type, const struct globals *g, const char **why)
{
	struct hid_report *r = NULL;

	for (unsigned i = 0; i < info->nreports && r == NULL; i++)
		if (info->reports[i].type == type && info->reports[i].id == g->report_id)
			r = &info->reports[i];
	if (r == NULL) {
		/* Cannot overflow: there are only that many (type, id) pairs. */
		r = &info->reports[info->nreports++];
		*r = (struct hid_report){.type = type, .id = g->report_id};
	}
	/* Both factors are bounded (256 x 12288), so the product fits in 32 bits. */
	uint64_t bits = (uint64_t)r->bits + (uint64_t)g->report_size * g->report_count;
	if (bits > 8u * HIDPARSE_MAX_REPORT_BYTES)
		return fail(why, "report longer than 4096 bytes");
	r->bits = (uint32_t)bits;
	return 0;
}

static int global_item(uint8_t tag, uint32_t v, size_t size, struct globals *g, struct globals *stack,
		       unsigned *depth, bool *numbered, const char **why)
{
	switch (tag) {
	case GLOBAL_USAGE_PAGE:
	case GLOBAL_LOGICAL_MIN:
	case GLOBAL_LOGICAL_MAX:
	case GLOBAL_PHYSICAL_MIN:
	case GLOBAL_PHYSICAL_MAX:
	case GLOBAL_UNIT_EXPONENT:
	case GLOBAL_UNIT:
		return 0; /* value semantics, not layout */
	case GLOBAL_REPORT_SIZE:
		if (v > MAX_REPORT_SIZE)
			return fail(why, "Report Size above 256 bits");
		g->report_size = v;
		return 0;
	case GLOBAL_REPORT_COUNT:
		if (v > MAX_REPORT_COUNT)
			return fail(why, "Report Count above 12288");
		g->report_count = v;
		return 0;
	case GLOBAL_REPORT_ID:
		if (size == 0 || v == 0 || v > 255)
			return fail(why, "Report ID must be 1..255");
		g->report_id = (uint8_t)v;
		*numbered = true;
		return 0;
	case GLOBAL_PUSH:
		if (*depth == HIDPARSE_STACK_DEPTH)
			return fail(why, "Push beyond the global stack");
		stack[(*depth)++] = *g;
		return 0;
	case GLOBAL_POP:
		if (*depth == 0)
			return fail(why, "Pop without Push");
		*g = stack[--(*depth)];
		return 0;
	}
	return fail(why, "unknown global item tag");
}

int hidparse(const uint8_t *desc, size_t len, struct hid_desc_info *info, const char **why)
{
	struct globals g = {0}, stack[HIDPARSE_STACK_DEPTH];
	unsigned depth = 0, collections = 0;
	size_t off = 0;
	int r;

	memset(info, 0, sizeof(*info));
	if (len == 0)
		return fail(why, "empty report descriptor");
	while (off < len) {
		uint8_t prefix = desc[off];

		if (prefix == LONG_ITEM_PREFIX) {
			/* Long items carry vendor data no HID 1.11 tag defines: skip them whole. */
			if (len - off < 3 || len - off - 3 < desc[off + 1])
				return fail(why, "truncated long item");
			off += 3 + (size_t)desc[off + 1];
			continue;
		}
		size_t size = prefix & 3;
		if (size == 3)
			size = 4;
		if (len - off - 1 < size)
			return fail(why, "truncated short item");
		uint32_t v = item_value(desc + off + 1, size);
		uint8_t type = (prefix >> 2) & 3, tag = prefix >> 4;
		off += 1 + size;

		switch (type) {
		case ITEM_MAIN:
			if (tag == MAIN_INPUT || tag == MAIN_OUTPUT || tag == MAIN_FEATURE) {
				uint8_t rt = tag == MAIN_INPUT	  ? HID_REPORT_INPUT
					     : tag == MAIN_OUTPUT ? HID_REPORT_OUTPUT
								  : HID_REPORT_FEATURE;
				if ((r = add_field(info, rt, &g, why)) < 0)
					return r;
			} else if (tag == MAIN_COLLECTION) {
				if (collections == HIDPARSE_MAX_COLLECTIONS)
					return fail(why, "collections nested too deep");
				collections++;
			} else if (tag == MAIN_END_COLLECTION) {
				if (collections == 0)
					return fail(why, "End Collection without Collection");
				collections--;
			}
			/* Reserved main tags are ignored, as Linux does. */
			break;
		case ITEM_GLOBAL:
			if ((r = global_item(tag, v, size, &g, stack, &depth, &info->numbered, why)) < 0)
				return r;
			break;
		case ITEM_LOCAL:
		case ITEM_RESERVED:
			/* Usages, designators, delimiters: they name fields, they do not size them. */
			break;
		}
	}
	if (collections != 0)
		return fail(why, "unbalanced collection at the end");
	/* hidraw puts the ID first in every report of a numbered device: ID 0 cannot be told apart. */
	if (info->numbered)
		for (unsigned i = 0; i < info->nreports; i++)
			if (info->reports[i].id == 0)
				return fail(
				    why, "a report without Report ID in a descriptor that numbers reports");
	return 0;
}
