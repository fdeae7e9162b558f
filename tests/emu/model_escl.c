/*
 * IPP-over-USB multifunction devices serving eSCL (the `ippusb` driver).
 *
 *   escl          an MFP in the shape of HP's IPP-USB products (vendor
 *                 03f0; no captured dump was found, see
 *                 ../shared/devices): interface 0 is a bidirectional
 *                 printer (7/1/2), interfaces 1 and 2 are IPP over USB
 *                 (7/1/4), one HTTP/1.1 connection each.  A flatbed of
 *                 2550 x 3508 (1/300 inch) and a feeder holding
 *                 ESCL_ADF_PAGES pages; colour, grey and black-and-white
 *                 at 75, 150, 300 and 600 dpi; PNG only, which the model
 *                 makes itself (stored deflate blocks): a test pattern of
 *                 exactly region x resolution / 300 pixels.
 *   escl-garbage  one 7/1/4 interface; ScannerStatus answers a malformed
 *                 status line, ScanJobs an endless header line.
 *   escl-liar     one 7/1/4 interface; ScannerStatus promises more body
 *                 than it sends, NextDocument sends more than it promises.
 *
 * eSCL as served: GET /eSCL/ScannerCapabilities and /eSCL/ScannerStatus
 * (State, AdfState, and a JobInfo per job: JobUri, JobState), POST
 * /eSCL/ScanJobs (201 + Location; 503 while a job is processing; 409 for
 * the feeder when it is empty), GET JOB/NextDocument (the first one of a
 * job answers 503, as a scanner warming up does; then 200 with the page
 * in chunks; 404 once a feeder job has no pages left), DELETE JOB
 * (cancels it).  Answers use Content-Length, documents chunked encoding.
 *
 * A flatbed job completes when its page was sent in full; what a host did
 * not read stays queued, across a driver's restart too, as on a real
 * device.  DELETE of a job whose page is being sent drops the unsent rest
 * (the answer ends short).
 *
 * What the tests read back, when PLUGFS_EMU_DIR is set: SYSNAME.deleted,
 * one line per DELETE received (the job's path).
 */
#include "emu.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "escl.h"

#define ESCL_ADF_PAGES	 3
#define ESCL_MAX_JOBS_M	 16
#define ESCL_RX_MAX	 (64u * 1024)
#define ESCL_CHUNK	 (64u * 1024)
#define ESCL_IMAGE_MAX	 (160u << 20)
#define ESCL_HUGE_HEADER 20000u

enum escl_variant { VARIANT_GOOD, VARIANT_GARBAGE, VARIANT_LIAR };

struct mjob {
	unsigned id;
	char uri[48];
	struct escl_settings s;
	enum { MJOB_PROCESSING, MJOB_COMPLETED, MJOB_CANCELED } state;
	bool warmed; /* the first NextDocument was answered 503 */
	unsigned pages;
};

struct hconn {
	uint8_t ep_in, ep_out;
	uint8_t rx[ESCL_RX_MAX];
	size_t rx_len;
	uint8_t *tx;
	size_t tx_len, tx_off, tx_cap;
	unsigned doc_job; /* id of the job whose page is being sent (0: none): sent at doc_end */
	size_t doc_end;
};

struct escl_model {
	enum escl_variant variant;
	unsigned nconns;
	struct hconn conns[EMU_MAX_IFACES];
	uint8_t printer_in, printer_out;
	unsigned next_id;
	unsigned njobs;
	struct mjob jobs[ESCL_MAX_JOBS_M];
	unsigned feeder;
	char deleted_path[256];
};

/* ---- Output ---- */

static int tx_put(struct hconn *hc, const void *p, size_t n)
{
	if (hc->tx_len + n > hc->tx_cap) {
		size_t cap = hc->tx_cap > 0 ? hc->tx_cap : 65536;
		while (cap < hc->tx_len + n)
			cap *= 2;
		uint8_t *nb = realloc(hc->tx, cap);
		if (nb == NULL)
			return -ENOMEM;
		hc->tx = nb;
		hc->tx_cap = cap;
	}
	memcpy(hc->tx + hc->tx_len, p, n);
	hc->tx_len += n;
	return 0;
}

static int tx_printf(struct hconn *hc, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int tx_printf(struct hconn *hc, const char *fmt, ...)
{
	char buf[1024];
	va_list ap;

	va_start(ap, fmt);
	int n = vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	if (n < 0 || (size_t)n >= sizeof(buf))
		return -ENOSPC;
	return tx_put(hc, buf, (size_t)n);
}

static void answer(struct hconn *hc, int status, const char *reason, const char *type, const char *body,
		   size_t len)
{
	tx_printf(hc, "HTTP/1.1 %d %s\r\nServer: plugfs-emu eSCL\r\nContent-Length: %zu\r\n", status, reason,
		  len);
	if (type != NULL)
		tx_printf(hc, "Content-Type: %s\r\n", type);
	tx_put(hc, "\r\n", 2);
	if (len > 0)
		tx_put(hc, body, len);
}

/* Jobs move in the table as old ones are forgotten: they are named by id. */
static struct mjob *job_by_id(struct escl_model *em, unsigned id)
{
	for (unsigned i = 0; i < em->njobs; i++)
		if (em->jobs[i].id == id)
			return &em->jobs[i];
	return NULL;
}

/* Moves queued answer bytes into pending IN URBs. */
static void pump(struct emu_dev *dev, struct hconn *hc)
{
	struct escl_model *em = dev->state;
	struct emu_urb *urb;

	while (hc->tx_off < hc->tx_len && (urb = emu_urb_first_pending(dev, hc->ep_in)) != NULL) {
		size_t n = hc->tx_len - hc->tx_off;
		if (n > urb->length)
			n = urb->length;
		memcpy(urb->data, hc->tx + hc->tx_off, n);
		hc->tx_off += n;
		emu_urb_complete(urb, 0, (uint32_t)n);
	}

	if (hc->doc_job != 0 && hc->tx_off >= hc->doc_end) {
		struct mjob *j = job_by_id(em, hc->doc_job);
		if (j != NULL && j->state == MJOB_PROCESSING && j->s.source == ESCL_SOURCE_FLATBED)
			j->state = MJOB_COMPLETED;
		hc->doc_job = 0;
	}
	if (hc->tx_off == hc->tx_len) {
		hc->tx_off = hc->tx_len = 0;
		/* Do not keep a big page's buffer around. */
		if (hc->tx_cap > (1u << 20)) {
			free(hc->tx);
			hc->tx = NULL;
			hc->tx_cap = 0;
		}
	}
}

/* ---- The image ---- */

static uint32_t crc_table[256];

static void crc_init(void)
{
	for (uint32_t n = 0; n < 256; n++) {
		uint32_t c = n;
		for (int k = 0; k < 8; k++)
			c = c & 1 ? 0xedb88320u ^ (c >> 1) : c >> 1;
		crc_table[n] = c;
	}
}

static uint32_t crc_update(uint32_t crc, const uint8_t *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		crc = crc_table[(crc ^ p[i]) & 0xff] ^ (crc >> 8);
	return crc;
}

static void put_be32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)(v >> 24);
	p[1] = (uint8_t)(v >> 16);
	p[2] = (uint8_t)(v >> 8);
	p[3] = (uint8_t)v;
}

/* Appends a PNG chunk whose data is at buf[off + 8 .. off + 8 + len), header and CRC written here. */
static void png_close_chunk(uint8_t *buf, size_t off, const char *type, size_t len)
{
	put_be32(buf + off, (uint32_t)len);
	memcpy(buf + off + 4, type, 4);
	put_be32(buf + off + 8 + len, crc_update(0xffffffffu, buf + off + 4, len + 4) ^ 0xffffffffu);
}

/*
 * A PNG of w x h pixels: 8-bit RGB, 8-bit grey or 1-bit black and white,
 * a pattern that differs per page, in one IDAT holding a zlib stream of
 * stored blocks.  Returns the malloc'd file and its length, or NULL.
 */
static uint8_t *make_png(unsigned w, unsigned h, enum escl_mode mode, unsigned page, size_t *out_len)
{
	static const uint8_t sig[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
	size_t row = mode == ESCL_MODE_COLOR ? 3u * w : mode == ESCL_MODE_GRAY ? w : (w + 7) / 8;
	size_t raw = (row + 1) * h;
	size_t blocks = raw / 65535 + 1;
	size_t zlen = 2 + raw + 5 * blocks + 4;
	size_t total = 8 + (12 + 13) + (12 + zlen) + 12;
	uint8_t *png, *p;
	uint32_t a = 1, b = 0;

	if (w == 0 || h == 0 || raw > ESCL_IMAGE_MAX || (png = malloc(total)) == NULL)
		return NULL;
	memcpy(png, sig, 8);
	p = png + 8;
	put_be32(p + 8, w);
	put_be32(p + 12, h);
	p[16] = mode == ESCL_MODE_BW ? 1 : 8;
	p[17] = mode == ESCL_MODE_COLOR ? 2 : 0;
	p[18] = p[19] = p[20] = 0;
	png_close_chunk(png, 8, "IHDR", 13);
	size_t idat = 8 + 25;
	p = png + idat + 8;
	*p++ = 0x78;
	*p++ = 0x01;
	uint8_t *rowbuf = malloc(row + 1);
	if (rowbuf == NULL) {
		free(png);
		return NULL;
	}
	size_t block_left = 0, done = 0;
	for (unsigned y = 0; y < h; y++) {
		rowbuf[0] = 0; /* filter: none */
		for (size_t i = 0; i < row; i++)
			rowbuf[1 + i] = (uint8_t)((i / 3 + y) * (page + 1) + (i % 3) * 85);
		for (size_t i = 0; i < row + 1; i++) {
			if (block_left == 0) {
				size_t n = raw - done < 65535 ? raw - done : 65535;
				*p++ = done + n == raw ? 1 : 0;
				*p++ = (uint8_t)n;
				*p++ = (uint8_t)(n >> 8);
				*p++ = (uint8_t)~n;
				*p++ = (uint8_t)(~n >> 8);
				block_left = n;
			}
			*p++ = rowbuf[i];
			a = (a + rowbuf[i]) % 65521;
			b = (b + a) % 65521;
			block_left--;
			done++;
		}
	}
	free(rowbuf);
	put_be32(p, b << 16 | a);
	p += 4;
	size_t used = (size_t)(p - (png + idat + 8));
	png_close_chunk(png, idat, "IDAT", used);
	size_t iend = idat + 12 + used;
	png_close_chunk(png, iend, "IEND", 0);
	*out_len = iend + 12;
	return png;
}

/* ---- eSCL ---- */

static const char caps_source_fmt[] =
    "      <scan:MinWidth>16</scan:MinWidth>\n"
    "      <scan:MaxWidth>2550</scan:MaxWidth>\n"
    "      <scan:MinHeight>16</scan:MinHeight>\n"
    "      <scan:MaxHeight>%u</scan:MaxHeight>\n"
    "      <scan:MaxScanRegions>1</scan:MaxScanRegions>\n"
    "      <scan:SettingProfiles>\n"
    "        <scan:SettingProfile>\n"
    "          <scan:ColorModes>\n"
    "            <scan:ColorMode>BlackAndWhite1</scan:ColorMode>\n"
    "            <scan:ColorMode>Grayscale8</scan:ColorMode>\n"
    "            <scan:ColorMode>RGB24</scan:ColorMode>\n"
    "          </scan:ColorModes>\n"
    "          <scan:DocumentFormats>\n"
    "            <pwg:DocumentFormat>image/png</pwg:DocumentFormat>\n"
    "            <scan:DocumentFormatExt>image/png</scan:DocumentFormatExt>\n"
    "          </scan:DocumentFormats>\n"
    "          <scan:SupportedResolutions>\n"
    "            <scan:DiscreteResolutions>\n"
    "%s"
    "            </scan:DiscreteResolutions>\n"
    "          </scan:SupportedResolutions>\n"
    "        </scan:SettingProfile>\n"
    "      </scan:SettingProfiles>\n";

static void serve_caps(struct hconn *hc)
{
	char res[1024] = "", platen[4096], adf[4096], doc[10240];
	static const unsigned dpis[] = {75, 150, 300, 600};

	for (unsigned i = 0; i < 4; i++) {
		size_t n = strlen(res);
		snprintf(res + n, sizeof(res) - n,
			 "              <scan:DiscreteResolution><scan:XResolution>%u</scan:XResolution>"
			 "<scan:YResolution>%u</scan:YResolution></scan:DiscreteResolution>\n",
			 dpis[i], dpis[i]);
	}
	snprintf(platen, sizeof(platen), caps_source_fmt, 3508u, res);
	snprintf(adf, sizeof(adf), caps_source_fmt, 4200u, res);
	int n =
	    snprintf(doc, sizeof(doc),
		     "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
		     "<scan:ScannerCapabilities xmlns:scan=\"http://schemas.hp.com/imaging/escl/2011/05/03\" "
		     "xmlns:pwg=\"http://www.pwg.org/schemas/2010/12/sm\">\n"
		     "  <pwg:Version>2.63</pwg:Version>\n"
		     "  <pwg:MakeAndModel>plugfs eSCL MFP</pwg:MakeAndModel>\n"
		     "  <pwg:SerialNumber>ESCL0001</pwg:SerialNumber>\n"
		     "  <scan:Platen>\n    <scan:PlatenInputCaps>\n%s    </scan:PlatenInputCaps>\n"
		     "  </scan:Platen>\n"
		     "  <scan:Adf>\n    <scan:AdfSimplexInputCaps>\n%s    </scan:AdfSimplexInputCaps>\n"
		     "    <scan:FeederCapacity>%u</scan:FeederCapacity>\n  </scan:Adf>\n"
		     "</scan:ScannerCapabilities>\n",
		     platen, adf, ESCL_ADF_PAGES);
	answer(hc, 200, "OK", "text/xml", doc, (size_t)n);
}

static bool any_processing(const struct escl_model *em)
{
	for (unsigned i = 0; i < em->njobs; i++)
		if (em->jobs[i].state == MJOB_PROCESSING)
			return true;
	return false;
}

static void serve_status(struct escl_model *em, struct hconn *hc)
{
	static const char *const states[] = {"Processing", "Completed", "Canceled"};
	char doc[8192];
	size_t n = (size_t)snprintf(
	    doc, sizeof(doc),
	    "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
	    "<scan:ScannerStatus xmlns:scan=\"http://schemas.hp.com/imaging/escl/2011/05/03\" "
	    "xmlns:pwg=\"http://www.pwg.org/schemas/2010/12/sm\">\n"
	    "  <pwg:Version>2.63</pwg:Version>\n"
	    "  <pwg:State>%s</pwg:State>\n"
	    "  <scan:AdfState>%s</scan:AdfState>\n"
	    "  <scan:Jobs>\n",
	    any_processing(em) ? "Processing" : "Idle",
	    em->feeder > 0 ? "ScannerAdfLoaded" : "ScannerAdfEmpty");
	for (unsigned i = 0; i < em->njobs && n < sizeof(doc) - 512; i++)
		n += (size_t)snprintf(
		    doc + n, sizeof(doc) - n,
		    "    <scan:JobInfo>\n      <pwg:JobUri>%s</pwg:JobUri>\n"
		    "      <pwg:JobUuid>urn:uuid:00000000-0000-0000-0000-%012u</pwg:JobUuid>\n"
		    "      <pwg:JobState>%s</pwg:JobState>\n    </scan:JobInfo>\n",
		    em->jobs[i].uri, em->jobs[i].id, states[em->jobs[i].state]);
	n += (size_t)snprintf(doc + n, sizeof(doc) - n, "  </scan:Jobs>\n</scan:ScannerStatus>\n");
	if (em->variant == VARIANT_GARBAGE) {
		tx_printf(hc, "HTTP/1.1 2OO OK\r\nContent-Length: %zu\r\n\r\n", n);
		tx_put(hc, doc, n);
	} else if (em->variant == VARIANT_LIAR) {
		/* Promises twice the body, sends it once, then nothing. */
		tx_printf(hc, "HTTP/1.1 200 OK\r\nContent-Length: %zu\r\n\r\n", 2 * n);
		tx_put(hc, doc, n);
	} else {
		answer(hc, 200, "OK", "text/xml", doc, n);
	}
}

static struct mjob *job_by_path(struct escl_model *em, const char *path, size_t len)
{
	for (unsigned i = 0; i < em->njobs; i++)
		if (strlen(em->jobs[i].uri) == len && memcmp(em->jobs[i].uri, path, len) == 0)
			return &em->jobs[i];
	return NULL;
}

static void serve_post(struct escl_model *em, struct hconn *hc, const uint8_t *body, size_t len)
{
	struct escl_settings s;
	const char *why = "";

	if (em->variant == VARIANT_GARBAGE) {
		tx_printf(hc, "HTTP/1.1 201 Created\r\nX-Padding: ");
		for (unsigned i = 0; i < ESCL_HUGE_HEADER / 16; i++)
			tx_put(hc, "0123456789abcdef", 16);
		tx_printf(hc, "\r\nLocation: /eSCL/ScanJobs/1\r\nContent-Length: 0\r\n\r\n");
		return;
	}
	if (escl_parse_scan_request((const char *)body, len, &s, &why) < 0) {
		emu_log("escl: bad ScanSettings: %s", why);
		return answer(hc, 400, "Bad Request", NULL, NULL, 0);
	}
	if (any_processing(em))
		return answer(hc, 503, "Service Unavailable", NULL, NULL, 0);
	if (s.source == ESCL_SOURCE_ADF && em->feeder == 0)
		return answer(hc, 409, "Conflict", NULL, NULL, 0);
	if (s.format != ESCL_FORMAT_PNG || s.w == 0 || s.h == 0)
		return answer(hc, 409, "Conflict", NULL, NULL, 0);
	if (em->njobs == ESCL_MAX_JOBS_M) {
		/* Forget the oldest finished job, as scanners keep a short history. */
		unsigned i = 0;
		while (i < em->njobs && em->jobs[i].state == MJOB_PROCESSING)
			i++;
		if (i == em->njobs)
			return answer(hc, 503, "Service Unavailable", NULL, NULL, 0);
		memmove(&em->jobs[i], &em->jobs[i + 1], (em->njobs - i - 1) * sizeof(em->jobs[0]));
		em->njobs--;
	}
	struct mjob *j = &em->jobs[em->njobs++];
	memset(j, 0, sizeof(*j));
	j->id = em->next_id++;
	snprintf(j->uri, sizeof(j->uri), "/eSCL/ScanJobs/%u", j->id);
	j->s = s;
	j->state = MJOB_PROCESSING;
	tx_printf(hc, "HTTP/1.1 201 Created\r\nLocation: http://localhost:80%s\r\nContent-Length: 0\r\n\r\n",
		  j->uri);
}

static void serve_document(struct escl_model *em, struct hconn *hc, struct mjob *j)
{
	size_t len, off = 0;
	uint8_t *png;

	if (j->state != MJOB_PROCESSING)
		return answer(hc, 404, "Not Found", NULL, NULL, 0);
	if (!j->warmed) {
		j->warmed = true;
		return answer(hc, 503, "Service Unavailable", NULL, NULL, 0);
	}
	if (j->s.source == ESCL_SOURCE_ADF) {
		if (em->feeder == 0) {
			j->state = MJOB_COMPLETED;
			return answer(hc, 404, "Not Found", NULL, NULL, 0);
		}
		em->feeder--;
	}
	png = make_png(j->s.w * j->s.resolution / 300, j->s.h * j->s.resolution / 300, j->s.mode, j->pages,
		       &len);
	if (png == NULL)
		return answer(hc, 500, "Internal Server Error", NULL, NULL, 0);
	j->pages++;
	if (em->variant == VARIANT_LIAR) {
		/* Promises 1000 bytes, sends the whole page. */
		tx_printf(hc, "HTTP/1.1 200 OK\r\nContent-Type: image/png\r\nContent-Length: 1000\r\n\r\n");
		tx_put(hc, png, len);
		free(png);
		return;
	}
	tx_printf(hc, "HTTP/1.1 200 OK\r\nContent-Type: image/png\r\nTransfer-Encoding: chunked\r\n\r\n");
	while (off < len) {
		size_t n = len - off < ESCL_CHUNK ? len - off : ESCL_CHUNK;
		tx_printf(hc, "%zx\r\n", n);
		tx_put(hc, png + off, n);
		tx_put(hc, "\r\n", 2);
		off += n;
	}
	tx_put(hc, "0\r\n\r\n", 5);
	free(png);
	hc->doc_job = j->id;
	hc->doc_end = hc->tx_len;
}

static void record_delete(struct escl_model *em, const char *path)
{
	FILE *f;

	if (em->deleted_path[0] == '\0')
		return;
	if ((f = fopen(em->deleted_path, "a")) == NULL) {
		emu_err("escl: %s: %s", em->deleted_path, strerror(errno));
		return;
	}
	fprintf(f, "%s\n", path);
	fclose(f);
}

/* One whole request: answer it into hc->tx. */
static void serve(struct escl_model *em, struct hconn *hc, const char *method, const char *path,
		  const uint8_t *body, size_t body_len)
{
	size_t plen = strlen(path);
	struct mjob *j;

	emu_log("escl: %s %s", method, path);
	if (strcmp(method, "GET") == 0 && strcmp(path, "/eSCL/ScannerCapabilities") == 0)
		return serve_caps(hc);
	if (strcmp(method, "GET") == 0 && strcmp(path, "/eSCL/ScannerStatus") == 0)
		return serve_status(em, hc);
	if (strcmp(method, "POST") == 0 && strcmp(path, "/eSCL/ScanJobs") == 0)
		return serve_post(em, hc, body, body_len);
	if (strcmp(method, "GET") == 0 && plen > 13 && strcmp(path + plen - 13, "/NextDocument") == 0 &&
	    (j = job_by_path(em, path, plen - 13)) != NULL)
		return serve_document(em, hc, j);
	if (strcmp(method, "DELETE") == 0 && (j = job_by_path(em, path, plen)) != NULL) {
		record_delete(em, path);
		if (j->state == MJOB_PROCESSING)
			j->state = MJOB_CANCELED;
		/* The scanner stops: what was not sent of the page never comes (the answer is cut short). */
		for (unsigned i = 0; i < em->nconns; i++)
			if (em->conns[i].doc_job == j->id) {
				em->conns[i].tx_len = em->conns[i].tx_off;
				em->conns[i].doc_job = 0;
			}
		return answer(hc, 200, "OK", NULL, NULL, 0);
	}
	answer(hc, 404, "Not Found", NULL, NULL, 0);
}

/* Takes every complete request out of hc->rx. */
static void take_requests(struct escl_model *em, struct hconn *hc)
{
	for (;;) {
		uint8_t *end = memmem(hc->rx, hc->rx_len, "\r\n\r\n", 4);
		char method[16], path[256];
		size_t head, body_len = 0;

		if (end == NULL)
			return;
		head = (size_t)(end - hc->rx) + 4;
		end[2] = '\0';
		if (sscanf((char *)hc->rx, "%15s %255s HTTP/1.1\r\n", method, path) != 2) {
			emu_err("escl: bad request line");
			hc->rx_len = 0;
			return;
		}
		char *cl = strcasestr((char *)hc->rx, "\r\nContent-Length:");
		if (cl != NULL)
			body_len = strtoul(cl + 17, NULL, 10);
		end[2] = '\r';
		if (body_len > ESCL_RX_MAX - head) {
			emu_err("escl: request body too big");
			hc->rx_len = 0;
			return;
		}
		if (hc->rx_len < head + body_len)
			return;
		serve(em, hc, method, path, hc->rx + head, body_len);
		memmove(hc->rx, hc->rx + head + body_len, hc->rx_len - head - body_len);
		hc->rx_len -= head + body_len;
	}
}

static struct hconn *conn_of_ep(struct escl_model *em, uint8_t ep)
{
	for (unsigned i = 0; i < em->nconns; i++)
		if (em->conns[i].ep_in == ep || em->conns[i].ep_out == ep)
			return &em->conns[i];
	return NULL;
}

static void escl_submit(struct emu_dev *dev, struct emu_urb *urb)
{
	struct escl_model *em = dev->state;
	struct hconn *hc = conn_of_ep(em, urb->endpoint);
	struct emu_urb *out;

	if (hc == NULL) {
		/* The printer interface: print jobs are taken and dropped; its back channel stays quiet. */
		if (urb->endpoint == em->printer_out)
			emu_urb_complete(urb, 0, urb->length);
		return;
	}
	while ((out = emu_urb_first_pending(dev, hc->ep_out)) != NULL) {
		if (out->length > ESCL_RX_MAX - hc->rx_len) {
			emu_err("escl: request too big, dropped");
			hc->rx_len = 0;
		}
		memcpy(hc->rx + hc->rx_len, out->data, out->length);
		hc->rx_len += out->length;
		emu_urb_complete(out, 0, out->length);
		take_requests(em, hc);
	}
	pump(dev, hc);
}

static int escl_control(struct emu_dev *dev, struct emu_urb *urb, const struct emu_setup *s, uint8_t *data)
{
	static const char id[] = "MFG:HP;MDL:plugfs eSCL MFP;CMD:PCL,PWG,URF;CLS:PRINTER;";
	size_t n = sizeof(id) - 1 + 2;

	(void)dev;
	(void)urb;
	/* The printer interface's GET_DEVICE_ID and GET_PORT_STATUS. */
	if (s->request_type == 0xa1 && s->request == 0) {
		uint8_t buf[sizeof(id) + 2];
		buf[0] = (uint8_t)(n >> 8);
		buf[1] = (uint8_t)n;
		memcpy(buf + 2, id, sizeof(id) - 1);
		if (n > s->length)
			n = s->length;
		memcpy(data, buf, n);
		return (int)n;
	}
	if (s->request_type == 0xa1 && s->request == 1 && s->length >= 1) {
		data[0] = 0x18;
		return 1;
	}
	return -EPIPE;
}

static int escl_init(struct emu_dev *dev)
{
	const struct emu_model *m = dev->model;
	struct escl_model *em = calloc(1, sizeof(*em));
	const char *dir = getenv("PLUGFS_EMU_DIR");

	if (em == NULL)
		return -ENOMEM;
	crc_init();
	em->variant = m == &emu_model_escl_garbage ? VARIANT_GARBAGE
		      : m == &emu_model_escl_liar  ? VARIANT_LIAR
						   : VARIANT_GOOD;
	em->feeder = ESCL_ADF_PAGES;
	em->next_id = 1000;
	for (unsigned i = 0; i < m->num_ifaces; i++) {
		const struct emu_iface_spec *ifs = &m->ifaces[i];
		uint8_t in = 0, out = 0;
		for (unsigned e = 0; e < ifs->num_eps; e++) {
			if (ifs->eps[e].address & 0x80)
				in = ifs->eps[e].address;
			else
				out = ifs->eps[e].address;
		}
		if (ifs->protocol == 4) {
			em->conns[em->nconns].ep_in = in;
			em->conns[em->nconns].ep_out = out;
			em->nconns++;
		} else {
			em->printer_in = in;
			em->printer_out = out;
		}
	}
	if (dir != NULL && dir[0] != '\0')
		snprintf(em->deleted_path, sizeof(em->deleted_path), "%s/%s.deleted", dir, dev->sysname);
	dev->state = em;
	return 0;
}

static void escl_fini(struct emu_dev *dev)
{
	struct escl_model *em = dev->state;

	if (em == NULL)
		return;
	for (unsigned i = 0; i < em->nconns; i++)
		free(em->conns[i].tx);
	free(em);
	dev->state = NULL;
}

static const struct emu_model_ops escl_ops = {
    .init = escl_init,
    .fini = escl_fini,
    .submit = escl_submit,
    .control = escl_control,
};

#define IPPUSB_IFACE(in, out)                                                                                \
	{                                                                                                    \
		.cls = 7, .subclass = 1, .protocol = 4, .num_eps = 2,                                        \
		.eps = {                                                                                     \
		    {.address = (out), .type = 2, .max_packet = 512},                                        \
		    {.address = (in), .type = 2, .max_packet = 512},                                         \
		},                                                                                           \
	}

const struct emu_model emu_model_escl = {
    .name = "escl",
    .summary = "03f0:ee11 IPP-USB MFP: printer 7/1/2 + two 7/1/4 eSCL interfaces, flatbed and 3-page feeder",
    .vendor_id = 0x03f0,
    .product_id = 0xee11,
    .bcd_device = 0x0100,
    .manufacturer = "HP",
    .product = "plugfs eSCL MFP",
    .serial = "ESCL0001",
    .num_ifaces = 3,
    .ifaces =
	{
	    {
		.cls = 7,
		.subclass = 1,
		.protocol = 2,
		.num_eps = 2,
		.eps = {{.address = 0x01, .type = 2, .max_packet = 512},
			{.address = 0x81, .type = 2, .max_packet = 512}},
	    },
	    IPPUSB_IFACE(0x82, 0x02),
	    IPPUSB_IFACE(0x83, 0x03),
	},
    .ops = &escl_ops,
};

const struct emu_model emu_model_escl_garbage = {
    .name = "escl-garbage",
    .summary = "03f0:ee12 IPP-USB scanner: malformed status line, endless header",
    .vendor_id = 0x03f0,
    .product_id = 0xee12,
    .bcd_device = 0x0100,
    .manufacturer = "HP",
    .product = "plugfs eSCL garbage",
    .serial = "ESCL0002",
    .num_ifaces = 1,
    .ifaces = {IPPUSB_IFACE(0x81, 0x01)},
    .ops = &escl_ops,
};

const struct emu_model emu_model_escl_liar = {
    .name = "escl-liar",
    .summary = "03f0:ee13 IPP-USB scanner whose Content-Length lies",
    .vendor_id = 0x03f0,
    .product_id = 0xee13,
    .bcd_device = 0x0100,
    .manufacturer = "HP",
    .product = "plugfs eSCL liar",
    .serial = "ESCL0003",
    .num_ifaces = 1,
    .ifaces = {IPPUSB_IFACE(0x81, 0x01)},
    .ops = &escl_ops,
};
