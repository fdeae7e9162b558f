/*
 * eSCL (Mopria/Apple "AirScan", the HTTP scan protocol IPP-USB devices
 * serve) documents: reading ScannerCapabilities and ScannerStatus, and the
 * scan settings a user writes, checked against the capabilities and turned
 * into a ScanSettings request.
 *
 * The XML is read by a minimal, strict tag scanner, not an XML library:
 * elements, attributes (skipped), text with the five predefined entities
 * and numeric character references, comments and processing instructions.
 * Anything else (DOCTYPE, CDATA, mismatched or unclosed tags, nesting
 * deeper than ESCL_XML_MAX_DEPTH) is an error.  Namespace prefixes are
 * dropped: `scan:MaxWidth` and `pwg:MaxWidth` are both MaxWidth, as every
 * eSCL client treats them.  The device is not trusted: numbers are
 * bounded, lists have fixed room, and what does not fit is left out.
 */
#ifndef PLUGFS_ESCL_H
#define PLUGFS_ESCL_H

#include <stdbool.h>
#include <stddef.h>

#define ESCL_XML_MAX_DEPTH   24
#define ESCL_MAX_RESOLUTIONS 32
#define ESCL_MAX_JOBS	     16
#define ESCL_MAX_URI	     256
/* Largest number taken from the device (resolutions, 1/300-inch sizes). */
#define ESCL_MAX_NUMBER 1000000u

/* Bits of escl_source_caps.modes / .formats. */
enum escl_mode { ESCL_MODE_BW = 1, ESCL_MODE_GRAY = 2, ESCL_MODE_COLOR = 4 };
enum escl_format { ESCL_FORMAT_JPEG = 1, ESCL_FORMAT_PDF = 2, ESCL_FORMAT_PNG = 4 };
enum escl_source { ESCL_SOURCE_FLATBED = 0, ESCL_SOURCE_ADF = 1 };

struct escl_source_caps {
	bool present;
	/* In 1/300 inch (eSCL's ThreeHundredthsOfInches). */
	unsigned min_width, max_width, min_height, max_height;
	unsigned modes, formats; /* enum escl_mode / escl_format bits */
	/* Square discrete resolutions (X == Y), in dpi. */
	unsigned nres;
	unsigned res[ESCL_MAX_RESOLUTIONS];
	/* A ResolutionRange, when given (step 0: none). */
	unsigned range_min, range_max, range_step;
};

struct escl_caps {
	struct escl_source_caps src[2]; /* by enum escl_source */
};

enum escl_state { ESCL_STATE_IDLE, ESCL_STATE_PROCESSING, ESCL_STATE_STOPPED };

struct escl_job {
	char uri[ESCL_MAX_URI];
	bool processing; /* JobState Pending or Processing: still holds the scanner */
};

struct escl_status {
	enum escl_state state;
	char adf_state[64]; /* AdfState as given (ScannerAdfLoaded...), "" if absent */
	unsigned njobs;
	struct escl_job jobs[ESCL_MAX_JOBS];
};

struct escl_settings {
	enum escl_source source;
	unsigned resolution; /* dpi, X and Y */
	enum escl_mode mode; /* one bit */
	enum escl_format format;
	unsigned x, y, w, h; /* region, 1/300 inch */
};

/* Parse a document; 0 or -EBADMSG with *why (if not NULL) saying what was wrong. */
int escl_parse_caps(const char *xml, size_t len, struct escl_caps *caps, const char **why);
int escl_parse_status(const char *xml, size_t len, struct escl_status *st, const char **why);

/* idle, processing, stopped. */
const char *escl_state_name(enum escl_state s);

/* Defaults for a scanner: flatbed if it has one, 300 dpi if offered, colour, JPEG, the whole area. */
int escl_settings_default(const struct escl_caps *caps, struct escl_settings *s);

/* 0 if the scanner can do `s`, else -EINVAL. */
int escl_settings_check(const struct escl_caps *caps, const struct escl_settings *s);

/*
 * Applies `key value` lines (resolution N, mode color|gray|bw, format
 * jpeg|pdf|png, source flatbed|adf, region X Y W H) to *s, all or none:
 * the result must pass escl_settings_check.  0 or -EINVAL.
 */
int escl_settings_apply(const struct escl_caps *caps, struct escl_settings *s, const char *text, size_t len);

/* The settings as `key value` lines; length, or -ENOSPC. */
int escl_settings_format(const struct escl_settings *s, char *buf, size_t cap);

/* The ScanSettings request for POST /eSCL/ScanJobs; length, or -ENOSPC. */
int escl_scan_request(const struct escl_settings *s, char *buf, size_t cap);

/*
 * The other side, for device models and tests: reads a ScanSettings
 * request back.  0 or -EBADMSG (a field missing or unknown).
 */
int escl_parse_scan_request(const char *xml, size_t len, struct escl_settings *s, const char **why);

/* MIME type of a format (image/jpeg...). */
const char *escl_format_mime(enum escl_format f);

#endif
