/*
 * libFuzzer target: arbitrary bytes as what an IPP-over-USB device sends
 * the ippusb driver, through the parsers the driver runs on it
 * (common/http.c, common/escl.c).
 *
 * Input: byte 0 is the size of the pieces the response arrives in (0: all
 * at once), as USB transfers would cut it; the rest is the response.  The
 * parser must not crash, must never hand out more body than it was given
 * or than Content-Length says, and once it failed must keep failing.  The
 * same bytes are then read as eSCL capabilities, status and a ScanSettings
 * request; capabilities that read well must give default settings that
 * pass their own check and survive a request round trip.
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "escl.h"
#include "http.h"

static void check(int cond)
{
	if (!cond)
		abort();
}

static void fuzz_http(const uint8_t *data, size_t size, size_t step)
{
	struct http_response r;
	struct http_span body;
	uint64_t got = 0;
	int last = 0;

	http_response_init(&r, false);
	for (size_t off = 0; off < size && last >= 0 && last != HTTP_EV_DONE;) {
		size_t n = step == 0 || size - off < step ? size - off : step;
		const uint8_t *p = data + off;
		size_t left = n;
		do {
			last = http_parse(&r, &p, &left, &body);
			if (last == HTTP_EV_BODY) {
				check(body.len > 0 && body.data >= data + off &&
				      body.data + body.len <= data + off + n);
				got += body.len;
			}
		} while (last > HTTP_EV_MORE && last != HTTP_EV_DONE);
		check(left <= n);
		off += n - left;
		if (last == HTTP_EV_MORE)
			check(left == 0);
	}
	if (last < 0) {
		check(last == -EBADMSG || last == -EMSGSIZE);
		check(r.why != NULL);
		const uint8_t *p = data;
		size_t left = size;
		check(http_parse(&r, &p, &left, &body) == last);
	}
	if (r.content_length >= 0 && !r.chunked)
		check(got <= (uint64_t)r.content_length);
	if (last == HTTP_EV_DONE)
		check(http_eof(&r) == 0);
	char path[64];
	(void)http_location_path(r.location, path, sizeof(path));
}

static void fuzz_escl(const uint8_t *data, size_t size)
{
	struct escl_caps caps;
	struct escl_status st;
	struct escl_settings s, back;
	char xml[4096];

	if (escl_parse_status((const char *)data, size, &st, NULL) == 0)
		check(st.njobs <= ESCL_MAX_JOBS);
	(void)escl_parse_scan_request((const char *)data, size, &back, NULL);
	if (escl_parse_caps((const char *)data, size, &caps, NULL) < 0)
		return;
	if (escl_settings_default(&caps, &s) < 0)
		return;
	check(escl_settings_check(&caps, &s) == 0);
	int n = escl_scan_request(&s, xml, sizeof(xml));
	check(n > 0);
	check(escl_parse_scan_request(xml, (size_t)n, &back, NULL) == 0);
	check(memcmp(&s, &back, sizeof(s)) == 0);
	/* Settings text from the input too: all or nothing, and always checkable. */
	struct escl_settings before = s;
	if (escl_settings_apply(&caps, &s, (const char *)data, size) == 0)
		check(escl_settings_check(&caps, &s) == 0);
	else
		check(memcmp(&before, &s, sizeof(s)) == 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size == 0)
		return 0;
	fuzz_http(data + 1, size - 1, data[0]);
	fuzz_escl(data + 1, size - 1);
	return 0;
}
