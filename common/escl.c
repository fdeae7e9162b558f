/*
 * eSCL documents (escl.h): a strict tag scanner, the two readers built on
 * it, and the user's settings.
 */
#include "escl.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Text of one element kept for the readers; longer text is passed as "" (no field we read is that long). */
#define XML_MAX_TEXT 512
#define XML_MAX_NAME 64

enum xml_event { XML_START, XML_END, XML_TEXT };

/* path[0..depth): local names from the root; the event's element is path[depth - 1]. */
typedef void (*xml_cb)(void *arg, enum xml_event ev, char path[][XML_MAX_NAME], unsigned depth,
		       const char *text);

struct xml {
	const char *p, *end;
	char path[ESCL_XML_MAX_DEPTH][XML_MAX_NAME];
	unsigned depth;
	bool had_child; /* the open element has child elements: its text is not a value */
	char text[XML_MAX_TEXT];
	size_t text_len;
	bool text_overflow;
	const char *why;
};

static int xml_fail(struct xml *x, const char *why)
{
	x->why = why;
	return -EBADMSG;
}

static bool name_char(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
	       c == '-' || c == '.' || c == ':' || (unsigned char)c >= 0x80;
}

static bool xml_space(char c)
{
	return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

/* Skips past `term`; -EBADMSG if it never comes. */
static int skip_past(struct xml *x, const char *term, const char *why)
{
	size_t n = strlen(term);

	for (; x->p + n <= x->end; x->p++)
		if (memcmp(x->p, term, n) == 0) {
			x->p += n;
			return 0;
		}
	return xml_fail(x, why);
}

/* Reads a qualified name and stores its local part (after the last ':'). */
static int read_name(struct xml *x, char *local)
{
	const char *start = x->p, *colon = NULL;

	while (x->p < x->end && name_char(*x->p)) {
		if (*x->p == ':')
			colon = x->p;
		x->p++;
	}
	const char *l = colon != NULL ? colon + 1 : start;
	size_t n = (size_t)(x->p - l);
	if (x->p == start || n == 0 || n >= XML_MAX_NAME)
		return xml_fail(x, "bad element name");
	memcpy(local, l, n);
	local[n] = '\0';
	return 0;
}

static void text_add(struct xml *x, char c)
{
	if (x->text_len + 1 < sizeof(x->text))
		x->text[x->text_len++] = c;
	else
		x->text_overflow = true;
}

/* An entity or character reference after '&'. */
static int read_entity(struct xml *x)
{
	static const struct {
		const char *name;
		char c;
	} named[] = {{"lt;", '<'}, {"gt;", '>'}, {"amp;", '&'}, {"quot;", '"'}, {"apos;", '\''}};

	for (size_t i = 0; i < sizeof(named) / sizeof(named[0]); i++) {
		size_t n = strlen(named[i].name);
		if ((size_t)(x->end - x->p) >= n && memcmp(x->p, named[i].name, n) == 0) {
			x->p += n;
			text_add(x, named[i].c);
			return 0;
		}
	}
	if (x->p < x->end && *x->p == '#') {
		unsigned long v = 0;
		int base = 10, digits = 0;
		x->p++;
		if (x->p < x->end && *x->p == 'x')
			base = 16, x->p++;
		for (; x->p < x->end && *x->p != ';' && digits < 8; x->p++, digits++) {
			char c = *x->p;
			int d = c >= '0' && c <= '9'		     ? c - '0'
				: base == 16 && c >= 'a' && c <= 'f' ? c - 'a' + 10
				: base == 16 && c >= 'A' && c <= 'F' ? c - 'A' + 10
								     : -1;
			if (d < 0)
				return xml_fail(x, "bad character reference");
			v = v * (unsigned long)base + (unsigned long)d;
		}
		if (x->p >= x->end || *x->p != ';' || digits == 0 || v == 0 || v > 0x10ffff)
			return xml_fail(x, "bad character reference");
		x->p++;
		/* Values we read are ASCII; anything else stands as '?'. */
		text_add(x, v < 0x80 ? (char)v : '?');
		return 0;
	}
	return xml_fail(x, "unknown entity");
}

/* Skips attributes up to '>' or "/>"; sets *empty for the latter. */
static int skip_attributes(struct xml *x, bool *empty)
{
	*empty = false;
	while (x->p < x->end) {
		char c = *x->p;
		if (c == '>') {
			x->p++;
			return 0;
		}
		if (c == '/' && x->p + 1 < x->end && x->p[1] == '>') {
			x->p += 2;
			*empty = true;
			return 0;
		}
		if (c == '"' || c == '\'') {
			const char *q = memchr(x->p + 1, c, (size_t)(x->end - x->p - 1));
			if (q == NULL)
				return xml_fail(x, "unterminated attribute value");
			if (memchr(x->p + 1, '<', (size_t)(q - x->p - 1)) != NULL)
				return xml_fail(x, "'<' in an attribute value");
			x->p = q + 1;
			continue;
		}
		if (c == '<')
			return xml_fail(x, "'<' inside a tag");
		x->p++;
	}
	return xml_fail(x, "unterminated tag");
}

/* Text trimmed of surrounding white space; "" when it did not fit. */
static const char *text_value(struct xml *x)
{
	char *s = x->text, *e = x->text + x->text_len;

	if (x->text_overflow)
		return "";
	while (s < e && xml_space(*s))
		s++;
	while (e > s && xml_space(e[-1]))
		e--;
	*e = '\0';
	return s;
}

static int xml_walk(const char *doc, size_t len, xml_cb cb, void *arg, const char **why)
{
	struct xml *x = calloc(1, sizeof(*x));
	bool root_seen = false;
	int r = 0;

	if (x == NULL)
		return -ENOMEM;
	x->p = doc;
	x->end = doc + len;
	if (memchr(doc, '\0', len) != NULL)
		r = xml_fail(x, "NUL byte");
	while (r == 0 && x->p < x->end) {
		char c = *x->p;
		if (c != '<') {
			x->p++;
			if (c == '&')
				r = read_entity(x);
			else if (x->depth > 0)
				text_add(x, c);
			else if (!xml_space(c))
				r = xml_fail(x, "text outside the root element");
		} else if (x->end - x->p >= 2 && x->p[1] == '?') {
			r = skip_past(x, "?>", "unterminated processing instruction");
		} else if (x->end - x->p >= 4 && memcmp(x->p, "<!--", 4) == 0) {
			r = skip_past(x, "-->", "unterminated comment");
		} else if (x->end - x->p >= 2 && x->p[1] == '!') {
			r = xml_fail(x, "DOCTYPE or CDATA not accepted");
		} else if (x->end - x->p >= 2 && x->p[1] == '/') {
			char name[XML_MAX_NAME];
			x->p += 2;
			if ((r = read_name(x, name)) < 0)
				break;
			while (x->p < x->end && xml_space(*x->p))
				x->p++;
			if (x->p >= x->end || *x->p != '>')
				r = xml_fail(x, "bad end tag");
			else if (x->depth == 0 || strcmp(name, x->path[x->depth - 1]) != 0)
				r = xml_fail(x, "end tag does not match");
			if (r < 0)
				break;
			x->p++;
			if (!x->had_child)
				cb(arg, XML_TEXT, x->path, x->depth, text_value(x));
			cb(arg, XML_END, x->path, x->depth, NULL);
			x->depth--;
			x->had_child = true;
			x->text_len = 0;
			x->text_overflow = false;
		} else {
			bool empty;
			x->p++;
			if (x->depth == 0 && root_seen) {
				r = xml_fail(x, "more than one root element");
				break;
			}
			if (x->depth == ESCL_XML_MAX_DEPTH) {
				r = xml_fail(x, "elements nested too deep");
				break;
			}
			if ((r = read_name(x, x->path[x->depth])) < 0 || (r = skip_attributes(x, &empty)) < 0)
				break;
			root_seen = true;
			x->depth++;
			x->had_child = false;
			x->text_len = 0;
			x->text_overflow = false;
			cb(arg, XML_START, x->path, x->depth, NULL);
			if (empty) {
				cb(arg, XML_TEXT, x->path, x->depth, "");
				cb(arg, XML_END, x->path, x->depth, NULL);
				x->depth--;
				x->had_child = true;
			}
		}
	}
	if (r == 0 && x->depth > 0)
		r = xml_fail(x, "unclosed element");
	if (r == 0 && !root_seen)
		r = xml_fail(x, "no root element");
	if (r < 0 && why != NULL)
		*why = x->why;
	free(x);
	return r;
}

/* ---- Readers ---- */

/* A decimal number within ESCL_MAX_NUMBER, or -1. */
static long number(const char *s)
{
	unsigned long v = 0;

	if (*s == '\0')
		return -1;
	for (; *s != '\0'; s++) {
		if (*s < '0' || *s > '9')
			return -1;
		v = v * 10 + (unsigned long)(*s - '0');
		if (v > ESCL_MAX_NUMBER)
			return -1;
	}
	return (long)v;
}

static bool in_path(char path[][XML_MAX_NAME], unsigned depth, const char *name)
{
	for (unsigned i = 0; i < depth; i++)
		if (strcmp(path[i], name) == 0)
			return true;
	return false;
}

struct caps_reader {
	struct escl_caps *caps;
	unsigned xres, yres; /* of the DiscreteResolution being read */
	bool bad;
	const char *why;
};

static struct escl_source_caps *caps_section(struct caps_reader *cr, char path[][XML_MAX_NAME],
					     unsigned depth)
{
	if (in_path(path, depth, "PlatenInputCaps"))
		return &cr->caps->src[ESCL_SOURCE_FLATBED];
	if (in_path(path, depth, "AdfSimplexInputCaps"))
		return &cr->caps->src[ESCL_SOURCE_ADF];
	return NULL;
}

static void caps_number(struct caps_reader *cr, unsigned *dst, const char *text)
{
	long v = number(text);

	if (v < 0) {
		cr->bad = true;
		cr->why = "a size or resolution is not a number in range";
		return;
	}
	*dst = (unsigned)v;
}

static void caps_cb(void *arg, enum xml_event ev, char path[][XML_MAX_NAME], unsigned depth, const char *text)
{
	struct caps_reader *cr = arg;
	struct escl_source_caps *sc = caps_section(cr, path, depth);
	const char *name = path[depth - 1];
	const char *parent = depth >= 2 ? path[depth - 2] : "";

	if (depth == 1 && ev == XML_START && strcmp(name, "ScannerCapabilities") != 0) {
		cr->bad = true;
		cr->why = "root element is not ScannerCapabilities";
	}
	if (sc == NULL)
		return;
	if (ev == XML_START) {
		if (strcmp(name, "PlatenInputCaps") == 0 || strcmp(name, "AdfSimplexInputCaps") == 0)
			sc->present = true;
		else if (strcmp(name, "DiscreteResolution") == 0)
			cr->xres = cr->yres = 0;
		return;
	}
	if (ev == XML_END) {
		if (strcmp(name, "DiscreteResolution") == 0 && cr->xres > 0 && cr->xres == cr->yres &&
		    sc->nres < ESCL_MAX_RESOLUTIONS) {
			for (unsigned i = 0; i < sc->nres; i++)
				if (sc->res[i] == cr->xres)
					return;
			sc->res[sc->nres++] = cr->xres;
		}
		return;
	}
	if (strcmp(name, "MinWidth") == 0)
		caps_number(cr, &sc->min_width, text);
	else if (strcmp(name, "MaxWidth") == 0)
		caps_number(cr, &sc->max_width, text);
	else if (strcmp(name, "MinHeight") == 0)
		caps_number(cr, &sc->min_height, text);
	else if (strcmp(name, "MaxHeight") == 0)
		caps_number(cr, &sc->max_height, text);
	else if (strcmp(name, "XResolution") == 0 && strcmp(parent, "DiscreteResolution") == 0)
		caps_number(cr, &cr->xres, text);
	else if (strcmp(name, "YResolution") == 0 && strcmp(parent, "DiscreteResolution") == 0)
		caps_number(cr, &cr->yres, text);
	else if (strcmp(parent, "XResolutionRange") == 0 && strcmp(name, "Min") == 0)
		caps_number(cr, &sc->range_min, text);
	else if (strcmp(parent, "XResolutionRange") == 0 && strcmp(name, "Max") == 0)
		caps_number(cr, &sc->range_max, text);
	else if (strcmp(parent, "XResolutionRange") == 0 && strcmp(name, "Step") == 0)
		caps_number(cr, &sc->range_step, text);
	else if (strcmp(name, "ColorMode") == 0) {
		if (strcmp(text, "RGB24") == 0)
			sc->modes |= ESCL_MODE_COLOR;
		else if (strcmp(text, "Grayscale8") == 0)
			sc->modes |= ESCL_MODE_GRAY;
		else if (strcmp(text, "BlackAndWhite1") == 0)
			sc->modes |= ESCL_MODE_BW;
	} else if (strcmp(name, "DocumentFormat") == 0 || strcmp(name, "DocumentFormatExt") == 0) {
		if (strcmp(text, "image/jpeg") == 0)
			sc->formats |= ESCL_FORMAT_JPEG;
		else if (strcmp(text, "application/pdf") == 0)
			sc->formats |= ESCL_FORMAT_PDF;
		else if (strcmp(text, "image/png") == 0)
			sc->formats |= ESCL_FORMAT_PNG;
	}
}

int escl_parse_caps(const char *xml, size_t len, struct escl_caps *caps, const char **why)
{
	struct caps_reader cr = {.caps = caps};
	int r;

	memset(caps, 0, sizeof(*caps));
	if ((r = xml_walk(xml, len, caps_cb, &cr, why)) < 0)
		return r;
	if (cr.bad) {
		if (why != NULL)
			*why = cr.why;
		return -EBADMSG;
	}
	for (unsigned i = 0; i < 2; i++) {
		struct escl_source_caps *sc = &caps->src[i];
		/* A range without a sane step is no range. */
		if (sc->range_step == 0 || sc->range_min == 0 || sc->range_min > sc->range_max)
			sc->range_min = sc->range_max = sc->range_step = 0;
		/* A source the scanner cannot use (no size, mode, format or resolution) is not there. */
		if (sc->max_width == 0 || sc->max_height == 0 || sc->modes == 0 || sc->formats == 0 ||
		    (sc->nres == 0 && sc->range_step == 0) || sc->min_width > sc->max_width ||
		    sc->min_height > sc->max_height)
			sc->present = false;
	}
	if (!caps->src[0].present && !caps->src[1].present) {
		if (why != NULL)
			*why = "no usable platen or feeder";
		return -EBADMSG;
	}
	return 0;
}

struct status_reader {
	struct escl_status *st;
	bool state_seen, bad;
	struct escl_job job;
	const char *why;
};

static void status_cb(void *arg, enum xml_event ev, char path[][XML_MAX_NAME], unsigned depth,
		      const char *text)
{
	struct status_reader *sr = arg;
	const char *name = path[depth - 1];

	if (depth == 1 && ev == XML_START && strcmp(name, "ScannerStatus") != 0) {
		sr->bad = true;
		sr->why = "root element is not ScannerStatus";
	}
	if (strcmp(name, "JobInfo") == 0 && ev == XML_START) {
		memset(&sr->job, 0, sizeof(sr->job));
	} else if (strcmp(name, "JobInfo") == 0 && ev == XML_END) {
		if (sr->job.uri[0] != '\0' && sr->st->njobs < ESCL_MAX_JOBS)
			sr->st->jobs[sr->st->njobs++] = sr->job;
	} else if (ev == XML_TEXT && depth == 2 && strcmp(name, "State") == 0) {
		sr->state_seen = true;
		if (strcmp(text, "Idle") == 0)
			sr->st->state = ESCL_STATE_IDLE;
		else if (strcmp(text, "Processing") == 0 || strcmp(text, "Testing") == 0)
			sr->st->state = ESCL_STATE_PROCESSING;
		else if (strcmp(text, "Stopped") == 0 || strcmp(text, "Down") == 0)
			sr->st->state = ESCL_STATE_STOPPED;
		else {
			sr->bad = true;
			sr->why = "unknown scanner State";
		}
	} else if (ev == XML_TEXT && depth == 2 && strcmp(name, "AdfState") == 0) {
		snprintf(sr->st->adf_state, sizeof(sr->st->adf_state), "%s", text);
	} else if (ev == XML_TEXT && depth >= 2 && strcmp(path[depth - 2], "JobInfo") == 0) {
		if (strcmp(name, "JobUri") == 0 && strlen(text) < sizeof(sr->job.uri))
			strcpy(sr->job.uri, text);
		else if (strcmp(name, "JobState") == 0)
			sr->job.processing = strcmp(text, "Processing") == 0 || strcmp(text, "Pending") == 0;
	}
}

int escl_parse_status(const char *xml, size_t len, struct escl_status *st, const char **why)
{
	struct status_reader sr = {.st = st};
	int r;

	memset(st, 0, sizeof(*st));
	if ((r = xml_walk(xml, len, status_cb, &sr, why)) < 0)
		return r;
	if (!sr.bad && !sr.state_seen) {
		sr.bad = true;
		sr.why = "no scanner State";
	}
	if (sr.bad) {
		if (why != NULL)
			*why = sr.why;
		return -EBADMSG;
	}
	return 0;
}

const char *escl_state_name(enum escl_state s)
{
	switch (s) {
	case ESCL_STATE_IDLE:
		return "idle";
	case ESCL_STATE_PROCESSING:
		return "processing";
	default:
		return "stopped";
	}
}

/* ---- Settings ---- */

struct word {
	const char *name;
	unsigned value;
	const char *escl; /* ColorMode / DocumentFormat / InputSource */
};

static const struct word modes[] = {
    {"color", ESCL_MODE_COLOR, "RGB24"},
    {"gray", ESCL_MODE_GRAY, "Grayscale8"},
    {"bw", ESCL_MODE_BW, "BlackAndWhite1"},
    {NULL, 0, NULL},
};

static const struct word formats[] = {
    {"jpeg", ESCL_FORMAT_JPEG, "image/jpeg"},
    {"pdf", ESCL_FORMAT_PDF, "application/pdf"},
    {"png", ESCL_FORMAT_PNG, "image/png"},
    {NULL, 0, NULL},
};

static const struct word sources[] = {
    {"flatbed", ESCL_SOURCE_FLATBED, "Platen"},
    {"adf", ESCL_SOURCE_ADF, "Feeder"},
    {NULL, 0, NULL},
};

static const struct word *word_by_name(const struct word *w, const char *name)
{
	for (; w->name != NULL; w++)
		if (strcmp(w->name, name) == 0)
			return w;
	return NULL;
}

static const struct word *word_by_value(const struct word *w, unsigned value)
{
	for (; w->name != NULL; w++)
		if (w->value == value)
			return w;
	return NULL;
}

const char *escl_format_mime(enum escl_format f)
{
	const struct word *w = word_by_value(formats, f);
	return w != NULL ? w->escl : "application/octet-stream";
}

static bool resolution_ok(const struct escl_source_caps *sc, unsigned res)
{
	for (unsigned i = 0; i < sc->nres; i++)
		if (sc->res[i] == res)
			return true;
	return sc->range_step > 0 && res >= sc->range_min && res <= sc->range_max &&
	       (res - sc->range_min) % sc->range_step == 0;
}

int escl_settings_check(const struct escl_caps *caps, const struct escl_settings *s)
{
	if (s->source != ESCL_SOURCE_FLATBED && s->source != ESCL_SOURCE_ADF)
		return -EINVAL;
	const struct escl_source_caps *sc = &caps->src[s->source];
	if (!sc->present || !resolution_ok(sc, s->resolution) || !(sc->modes & s->mode) ||
	    !(sc->formats & s->format) || word_by_value(modes, s->mode) == NULL ||
	    word_by_value(formats, s->format) == NULL)
		return -EINVAL;
	if (s->w == 0 || s->h == 0 || s->w < sc->min_width || s->h < sc->min_height || s->x > sc->max_width ||
	    s->y > sc->max_height || s->w > sc->max_width - s->x || s->h > sc->max_height - s->y)
		return -EINVAL;
	return 0;
}

int escl_settings_default(const struct escl_caps *caps, struct escl_settings *s)
{
	static const unsigned mode_pref[] = {ESCL_MODE_COLOR, ESCL_MODE_GRAY, ESCL_MODE_BW};
	static const unsigned format_pref[] = {ESCL_FORMAT_JPEG, ESCL_FORMAT_PNG, ESCL_FORMAT_PDF};

	memset(s, 0, sizeof(*s));
	s->source = caps->src[ESCL_SOURCE_FLATBED].present ? ESCL_SOURCE_FLATBED : ESCL_SOURCE_ADF;
	const struct escl_source_caps *sc = &caps->src[s->source];
	if (resolution_ok(sc, 300)) {
		s->resolution = 300;
	} else {
		s->resolution = sc->nres > 0 ? sc->res[0] : sc->range_min;
		for (unsigned i = 1; i < sc->nres; i++)
			if (sc->res[i] < s->resolution)
				s->resolution = sc->res[i];
	}
	for (unsigned i = 0; i < 3 && s->mode == 0; i++)
		if (sc->modes & mode_pref[i])
			s->mode = (enum escl_mode)mode_pref[i];
	for (unsigned i = 0; i < 3 && s->format == 0; i++)
		if (sc->formats & format_pref[i])
			s->format = (enum escl_format)format_pref[i];
	s->w = sc->max_width;
	s->h = sc->max_height;
	return escl_settings_check(caps, s);
}

/* Splits a line into at most `max` words; their count, or -1 for more. */
static int split_words(char *line, char **words, int max)
{
	int n = 0;

	for (char *tok = strtok(line, " \t"); tok != NULL; tok = strtok(NULL, " \t")) {
		if (n == max)
			return -1;
		words[n++] = tok;
	}
	return n;
}

static bool parse_unsigned(const char *s, unsigned *out)
{
	long v = number(s);

	if (v < 0)
		return false;
	*out = (unsigned)v;
	return true;
}

static int apply_line(struct escl_settings *s, char *line)
{
	char *w[6];
	int n = split_words(line, w, 6);
	const struct word *word;

	if (n == 0)
		return 0;
	if (n < 0)
		return -EINVAL;
	if (strcmp(w[0], "resolution") == 0 && n == 2)
		return parse_unsigned(w[1], &s->resolution) && s->resolution > 0 ? 0 : -EINVAL;
	if (strcmp(w[0], "mode") == 0 && n == 2 && (word = word_by_name(modes, w[1])) != NULL) {
		s->mode = (enum escl_mode)word->value;
		return 0;
	}
	if (strcmp(w[0], "format") == 0 && n == 2 && (word = word_by_name(formats, w[1])) != NULL) {
		s->format = (enum escl_format)word->value;
		return 0;
	}
	if (strcmp(w[0], "source") == 0 && n == 2 && (word = word_by_name(sources, w[1])) != NULL) {
		s->source = (enum escl_source)word->value;
		return 0;
	}
	if (strcmp(w[0], "region") == 0 && n == 5)
		return parse_unsigned(w[1], &s->x) && parse_unsigned(w[2], &s->y) &&
			       parse_unsigned(w[3], &s->w) && parse_unsigned(w[4], &s->h)
			   ? 0
			   : -EINVAL;
	return -EINVAL;
}

int escl_settings_apply(const struct escl_caps *caps, struct escl_settings *s, const char *text, size_t len)
{
	struct escl_settings next = *s;
	char line[256];

	while (len > 0) {
		const char *nl = memchr(text, '\n', len);
		size_t n = nl != NULL ? (size_t)(nl - text) : len;
		if (n >= sizeof(line) || memchr(text, '\0', n) != NULL)
			return -EINVAL;
		memcpy(line, text, n);
		line[n] = '\0';
		if (apply_line(&next, line) < 0)
			return -EINVAL;
		text += n + (nl != NULL);
		len -= n + (nl != NULL);
	}
	if (escl_settings_check(caps, &next) < 0)
		return -EINVAL;
	*s = next;
	return 0;
}

int escl_settings_format(const struct escl_settings *s, char *buf, size_t cap)
{
	const struct word *m = word_by_value(modes, s->mode), *f = word_by_value(formats, s->format),
			  *src = word_by_value(sources, s->source);
	int n = snprintf(buf, cap, "resolution %u\nmode %s\nformat %s\nsource %s\nregion %u %u %u %u\n",
			 s->resolution, m != NULL ? m->name : "?", f != NULL ? f->name : "?",
			 src != NULL ? src->name : "?", s->x, s->y, s->w, s->h);

	return n < 0 || (size_t)n >= cap ? -ENOSPC : n;
}

int escl_scan_request(const struct escl_settings *s, char *buf, size_t cap)
{
	const struct word *m = word_by_value(modes, s->mode), *f = word_by_value(formats, s->format),
			  *src = word_by_value(sources, s->source);
	if (m == NULL || f == NULL || src == NULL)
		return -EINVAL;
	int n = snprintf(
	    buf, cap,
	    "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
	    "<scan:ScanSettings xmlns:scan=\"http://schemas.hp.com/imaging/escl/2011/05/03\" "
	    "xmlns:pwg=\"http://www.pwg.org/schemas/2010/12/sm\">\n"
	    "  <pwg:Version>2.0</pwg:Version>\n"
	    "  <pwg:ScanRegions>\n"
	    "    <pwg:ScanRegion>\n"
	    "      <pwg:XOffset>%u</pwg:XOffset>\n"
	    "      <pwg:YOffset>%u</pwg:YOffset>\n"
	    "      <pwg:Width>%u</pwg:Width>\n"
	    "      <pwg:Height>%u</pwg:Height>\n"
	    "      <pwg:ContentRegionUnits>escl:ThreeHundredthsOfInches</pwg:ContentRegionUnits>\n"
	    "    </pwg:ScanRegion>\n"
	    "  </pwg:ScanRegions>\n"
	    "  <pwg:InputSource>%s</pwg:InputSource>\n"
	    "  <scan:ColorMode>%s</scan:ColorMode>\n"
	    "  <pwg:DocumentFormat>%s</pwg:DocumentFormat>\n"
	    "  <scan:DocumentFormatExt>%s</scan:DocumentFormatExt>\n"
	    "  <scan:XResolution>%u</scan:XResolution>\n"
	    "  <scan:YResolution>%u</scan:YResolution>\n"
	    "</scan:ScanSettings>\n",
	    s->x, s->y, s->w, s->h, src->escl, m->escl, f->escl, f->escl, s->resolution, s->resolution);

	return n < 0 || (size_t)n >= cap ? -ENOSPC : n;
}

/* ---- The other side: reading a ScanSettings request (device models, tests) ---- */

struct request_reader {
	struct escl_settings *s;
	unsigned seen; /* bits: which fields came */
	bool bad;
};

static void request_cb(void *arg, enum xml_event ev, char path[][XML_MAX_NAME], unsigned depth,
		       const char *text)
{
	struct request_reader *rr = arg;
	const char *name = path[depth - 1];
	const struct word *w;
	unsigned *num = NULL, bit = 0;

	if (ev != XML_TEXT)
		return;
	if (strcmp(name, "XOffset") == 0)
		num = &rr->s->x, bit = 1;
	else if (strcmp(name, "YOffset") == 0)
		num = &rr->s->y, bit = 2;
	else if (strcmp(name, "Width") == 0)
		num = &rr->s->w, bit = 4;
	else if (strcmp(name, "Height") == 0)
		num = &rr->s->h, bit = 8;
	else if (strcmp(name, "XResolution") == 0)
		num = &rr->s->resolution, bit = 16;
	if (num != NULL) {
		if (!parse_unsigned(text, num))
			rr->bad = true;
		rr->seen |= bit;
	} else if (strcmp(name, "InputSource") == 0) {
		for (w = sources; w->name != NULL && strcmp(w->escl, text) != 0; w++)
			;
		rr->s->source = (enum escl_source)w->value;
		rr->bad |= w->name == NULL;
		rr->seen |= 32;
	} else if (strcmp(name, "ColorMode") == 0) {
		for (w = modes; w->name != NULL && strcmp(w->escl, text) != 0; w++)
			;
		rr->s->mode = (enum escl_mode)w->value;
		rr->bad |= w->name == NULL;
		rr->seen |= 64;
	} else if (strcmp(name, "DocumentFormatExt") == 0 || strcmp(name, "DocumentFormat") == 0) {
		for (w = formats; w->name != NULL && strcmp(w->escl, text) != 0; w++)
			;
		rr->s->format = (enum escl_format)w->value;
		rr->bad |= w->name == NULL;
		rr->seen |= 128;
	}
}

int escl_parse_scan_request(const char *xml, size_t len, struct escl_settings *s, const char **why)
{
	struct request_reader rr = {.s = s};
	int r;

	memset(s, 0, sizeof(*s));
	if ((r = xml_walk(xml, len, request_cb, &rr, why)) < 0)
		return r;
	if (rr.bad || rr.seen != 255) {
		if (why != NULL)
			*why = rr.bad ? "a setting has an unknown value" : "a setting is missing";
		return -EBADMSG;
	}
	return 0;
}
