/*
 * eSCL documents (common/escl.c): capabilities and status as real scanners
 * write them (namespace prefixes, comments, attributes, entities, ranges),
 * malformed XML refused, settings checked against the capabilities, and
 * the ScanSettings request read back the way a scanner reads it.  Also the
 * binding of IPP-over-USB siblings (common/bind.c).
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "bind.h"
#include "escl.h"
#include "suites.h"

static const char caps_xml[] =
    "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
    "<!-- as an HP MFP sends it -->\n"
    "<scan:ScannerCapabilities xmlns:pwg=\"http://www.pwg.org/schemas/2010/12/sm\" "
    "xmlns:scan=\"http://schemas.hp.com/imaging/escl/2011/05/03\">\n"
    "<pwg:Version>2.63</pwg:Version><pwg:MakeAndModel>HP &amp; Co &#x41;</pwg:MakeAndModel>\n"
    "<scan:Platen><scan:PlatenInputCaps>\n"
    "  <scan:MinWidth>8</scan:MinWidth><scan:MaxWidth>2550</scan:MaxWidth>\n"
    "  <scan:MinHeight>8</scan:MinHeight><scan:MaxHeight>3508</scan:MaxHeight>\n"
    "  <scan:SettingProfiles><scan:SettingProfile name=\"p1\">\n"
    "    <scan:ColorModes><scan:ColorMode>RGB24</scan:ColorMode><scan:ColorMode>Grayscale8</scan:ColorMode>"
    "<scan:ColorMode>RGB48</scan:ColorMode></scan:ColorModes>\n"
    "    <scan:DocumentFormats><pwg:DocumentFormat>image/jpeg</pwg:DocumentFormat>"
    "<pwg:DocumentFormat>application/pdf</pwg:DocumentFormat>"
    "<scan:DocumentFormatExt>image/jpeg</scan:DocumentFormatExt></scan:DocumentFormats>\n"
    "    <scan:SupportedResolutions><scan:DiscreteResolutions>\n"
    "      <scan:DiscreteResolution><scan:XResolution>100</scan:XResolution>"
    "<scan:YResolution>100</scan:YResolution></scan:DiscreteResolution>\n"
    "      <scan:DiscreteResolution><scan:XResolution>200</scan:XResolution>"
    "<scan:YResolution>200</scan:YResolution></scan:DiscreteResolution>\n"
    "      <scan:DiscreteResolution><scan:XResolution>600</scan:XResolution>"
    "<scan:YResolution>300</scan:YResolution></scan:DiscreteResolution>\n"
    "    </scan:DiscreteResolutions></scan:SupportedResolutions>\n"
    "  </scan:SettingProfile></scan:SettingProfiles>\n"
    "  <scan:SupportedIntents><scan:Intent>Document</scan:Intent><scan:Empty/></scan:SupportedIntents>\n"
    "</scan:PlatenInputCaps></scan:Platen>\n"
    "<scan:Adf><scan:AdfSimplexInputCaps>\n"
    "  <scan:MinWidth>16</scan:MinWidth><scan:MaxWidth>2550</scan:MaxWidth>\n"
    "  <scan:MinHeight>16</scan:MinHeight><scan:MaxHeight>4200</scan:MaxHeight>\n"
    "  <scan:SettingProfiles><scan:SettingProfile>\n"
    "    <scan:ColorModes><scan:ColorMode>BlackAndWhite1</scan:ColorMode></scan:ColorModes>\n"
    "    "
    "<scan:DocumentFormats><pwg:DocumentFormat>application/pdf</pwg:DocumentFormat></scan:DocumentFormats>\n"
    "    <scan:SupportedResolutions><scan:ResolutionRange><scan:XResolutionRange>"
    "<scan:Min>75</scan:Min><scan:Max>600</scan:Max><scan:Normal>300</scan:Normal><scan:Step>75</scan:Step>"
    "</scan:XResolutionRange></scan:ResolutionRange></scan:SupportedResolutions>\n"
    "  </scan:SettingProfile></scan:SettingProfiles>\n"
    "</scan:AdfSimplexInputCaps>\n"
    "<scan:AdfDuplexInputCaps><scan:MaxWidth>1</scan:MaxWidth></scan:AdfDuplexInputCaps>\n"
    "</scan:Adf>\n"
    "</scan:ScannerCapabilities>\n";

static struct escl_caps caps_ok(void)
{
	struct escl_caps c;
	const char *why = NULL;
	int r = escl_parse_caps(caps_xml, strlen(caps_xml), &c, &why);

	ck_assert_msg(r == 0, "caps: %s", why);
	return c;
}

START_TEST(parse_caps)
{
	struct escl_caps c = caps_ok();
	const struct escl_source_caps *p = &c.src[ESCL_SOURCE_FLATBED], *a = &c.src[ESCL_SOURCE_ADF];

	ck_assert(p->present);
	ck_assert_uint_eq(p->min_width, 8);
	ck_assert_uint_eq(p->max_width, 2550);
	ck_assert_uint_eq(p->max_height, 3508);
	ck_assert_uint_eq(p->modes, ESCL_MODE_COLOR | ESCL_MODE_GRAY);
	ck_assert_uint_eq(p->formats, ESCL_FORMAT_JPEG | ESCL_FORMAT_PDF);
	/* 600 x 300 is not square: left out. */
	ck_assert_uint_eq(p->nres, 2);
	ck_assert_uint_eq(p->res[0], 100);
	ck_assert_uint_eq(p->res[1], 200);
	ck_assert(a->present);
	ck_assert_uint_eq(a->max_height, 4200);
	ck_assert_uint_eq(a->modes, ESCL_MODE_BW);
	ck_assert_uint_eq(a->formats, ESCL_FORMAT_PDF);
	ck_assert_uint_eq(a->nres, 0);
	ck_assert_uint_eq(a->range_min, 75);
	ck_assert_uint_eq(a->range_max, 600);
	ck_assert_uint_eq(a->range_step, 75);
}
END_TEST

static const char *const bad_xml[] = {
    "",
    "<scan:ScannerCapabilities>",
    "<a><b></a></b>",
    "<a></a><b></b>",
    "text<a></a>",
    "<!DOCTYPE a><a></a>",
    "<a><![CDATA[x]]></a>",
    "<a>&nbsp;</a>",
    "<a>&#xZZ;</a>",
    "<a>&#0;</a>",
    "<a b=\"unterminated></a>",
    "<a><!-- never closed </a>",
    "<?xml never closed <a></a>",
    "<a></a >x",
    "< a></a>",
    "<a\0></a>",
};

START_TEST(malformed_xml)
{
	struct escl_caps c;
	struct escl_status st;
	const char *why = NULL;
	const char *doc = bad_xml[_i];
	size_t len = _i == 15 ? 8 : strlen(doc);

	ck_assert_int_eq(escl_parse_caps(doc, len, &c, &why), -EBADMSG);
	ck_assert_ptr_nonnull(why);
	ck_assert_int_eq(escl_parse_status(doc, len, &st, &why), -EBADMSG);
}
END_TEST

START_TEST(deep_and_odd)
{
	char doc[4096] = "";
	struct escl_caps c;
	const char *why;

	for (int i = 0; i < ESCL_XML_MAX_DEPTH + 1; i++)
		strcat(doc, "<a>");
	for (int i = 0; i < ESCL_XML_MAX_DEPTH + 1; i++)
		strcat(doc, "</a>");
	ck_assert_int_eq(escl_parse_caps(doc, strlen(doc), &c, &why), -EBADMSG);
	ck_assert_str_eq(why, "elements nested too deep");
	/* Well-formed, but not capabilities or without a usable source. */
	const char *other = "<scan:ScannerStatus><pwg:State>Idle</pwg:State></scan:ScannerStatus>";
	ck_assert_int_eq(escl_parse_caps(other, strlen(other), &c, &why), -EBADMSG);
	const char *empty = "<scan:ScannerCapabilities><scan:Platen/></scan:ScannerCapabilities>";
	ck_assert_int_eq(escl_parse_caps(empty, strlen(empty), &c, &why), -EBADMSG);
	/* A number out of range. */
	char big[sizeof(caps_xml) + 16];
	snprintf(big, sizeof(big), "%s", caps_xml);
	char *w = strstr(big, "<scan:MaxWidth>2550");
	memcpy(w + strlen("<scan:MaxWidth>"), "9999999999", 10);
	ck_assert_int_eq(escl_parse_caps(big, strlen(big), &c, &why), -EBADMSG);
}
END_TEST

START_TEST(parse_status)
{
	static const char doc[] =
	    "<?xml version=\"1.0\"?>\n<scan:ScannerStatus xmlns:scan=\"x\" xmlns:pwg=\"y\">"
	    "<pwg:Version>2.0</pwg:Version><pwg:State>Processing</pwg:State>"
	    "<scan:AdfState>ScannerAdfLoaded</scan:AdfState><scan:Jobs>"
	    "<scan:JobInfo><pwg:JobUri>/eSCL/ScanJobs/1</pwg:JobUri><pwg:JobState>Completed</pwg:JobState>"
	    "</scan:JobInfo>"
	    "<scan:JobInfo><pwg:JobState>Processing</pwg:JobState><pwg:JobUri>/eSCL/ScanJobs/2</pwg:JobUri>"
	    "<pwg:JobStateReasons><pwg:JobStateReason>JobScanning</pwg:JobStateReason></pwg:JobStateReasons>"
	    "</scan:JobInfo>"
	    "<scan:JobInfo><pwg:JobState>Pending</pwg:JobState><pwg:JobUri>http://h/eSCL/ScanJobs/3</"
	    "pwg:JobUri>"
	    "</scan:JobInfo>"
	    "<scan:JobInfo><pwg:JobState>Processing</pwg:JobState></scan:JobInfo>"
	    "</scan:Jobs></scan:ScannerStatus>";
	struct escl_status st;
	const char *why = NULL;

	ck_assert_msg(escl_parse_status(doc, strlen(doc), &st, &why) == 0, "%s", why);
	ck_assert_int_eq(st.state, ESCL_STATE_PROCESSING);
	ck_assert_str_eq(escl_state_name(st.state), "processing");
	ck_assert_str_eq(st.adf_state, "ScannerAdfLoaded");
	/* A JobInfo without a JobUri cannot be acted on: left out. */
	ck_assert_uint_eq(st.njobs, 3);
	ck_assert_str_eq(st.jobs[0].uri, "/eSCL/ScanJobs/1");
	ck_assert(!st.jobs[0].processing);
	ck_assert(st.jobs[1].processing);
	ck_assert(st.jobs[2].processing);

	static const char *const states[][2] = {
	    {"Idle", "idle"}, {"Testing", "processing"}, {"Stopped", "stopped"}, {"Down", "stopped"}};
	for (int i = 0; i < 4; i++) {
		char d[256];
		snprintf(d, sizeof(d), "<ScannerStatus><State>%s</State></ScannerStatus>", states[i][0]);
		ck_assert_int_eq(escl_parse_status(d, strlen(d), &st, NULL), 0);
		ck_assert_str_eq(escl_state_name(st.state), states[i][1]);
	}
	const char *unknown = "<ScannerStatus><State>Dancing</State></ScannerStatus>";
	ck_assert_int_eq(escl_parse_status(unknown, strlen(unknown), &st, &why), -EBADMSG);
	const char *none = "<ScannerStatus><AdfState>x</AdfState></ScannerStatus>";
	ck_assert_int_eq(escl_parse_status(none, strlen(none), &st, &why), -EBADMSG);
}
END_TEST

START_TEST(settings)
{
	struct escl_caps c = caps_ok();
	struct escl_settings s;
	char text[256];

	/* No 300 dpi on this platen: the lowest; colour; JPEG; the whole platen. */
	ck_assert_int_eq(escl_settings_default(&c, &s), 0);
	ck_assert_int_gt(escl_settings_format(&s, text, sizeof(text)), 0);
	ck_assert_str_eq(text,
			 "resolution 100\nmode color\nformat jpeg\nsource flatbed\nregion 0 0 2550 3508\n");

	static const char *const good = "resolution 200\n\nmode gray\nformat pdf\nregion 10 20 300 400";
	ck_assert_int_eq(escl_settings_apply(&c, &s, good, strlen(good)), 0);
	escl_settings_format(&s, text, sizeof(text));
	ck_assert_str_eq(text,
			 "resolution 200\nmode gray\nformat pdf\nsource flatbed\nregion 10 20 300 400\n");

	static const char *const bad[] = {
	    "resolution 300",
	    "resolution 600",
	    "mode bw",
	    "format png",
	    "source adf",
	    "region 0 0 2551 10",
	    "region 2540 0 11 8",
	    "region 0 0 7 8",
	    "region 0 0 8",
	    "mode",
	    "source flatbed adf",
	    "xyz 1",
	    "resolution 1e3",
	    "resolution 4294967296",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct escl_settings before = s;
		ck_assert_msg(escl_settings_apply(&c, &s, bad[i], strlen(bad[i])) == -EINVAL, "'%s' taken",
			      bad[i]);
		ck_assert(memcmp(&before, &s, sizeof(s)) == 0);
	}
	/* The feeder: black and white PDF only, resolutions on its 75-dpi range, all in one write. */
	static const char *const adf = "source adf\nmode bw\nresolution 525\nregion 0 0 2550 4200\n";
	ck_assert_int_eq(escl_settings_apply(&c, &s, adf, strlen(adf)), 0);
	ck_assert_int_eq(escl_settings_apply(&c, &s, "resolution 500", 14), -EINVAL);
	ck_assert_int_eq(escl_settings_apply(&c, &s, "resolution 675", 14), -EINVAL);
}
END_TEST

/* What the driver POSTs is what a scanner reads back. */
START_TEST(scan_request_roundtrip)
{
	struct escl_settings s = {.source = ESCL_SOURCE_ADF,
				  .resolution = 150,
				  .mode = ESCL_MODE_GRAY,
				  .format = ESCL_FORMAT_PNG,
				  .x = 1,
				  .y = 2,
				  .w = 300,
				  .h = 400},
			     back;
	char xml[4096];
	const char *why = NULL;

	ck_assert_int_gt(escl_scan_request(&s, xml, sizeof(xml)), 0);
	ck_assert_ptr_nonnull(strstr(xml, "<pwg:InputSource>Feeder</pwg:InputSource>"));
	ck_assert_ptr_nonnull(strstr(xml, "<scan:ColorMode>Grayscale8</scan:ColorMode>"));
	ck_assert_msg(escl_parse_scan_request(xml, strlen(xml), &back, &why) == 0, "%s", why);
	ck_assert(memcmp(&s, &back, sizeof(s)) == 0);
	ck_assert_int_eq(escl_scan_request(&s, xml, 100), -ENOSPC);
	ck_assert_str_eq(escl_format_mime(ESCL_FORMAT_JPEG), "image/jpeg");
}
END_TEST

/* An IPP-USB device: the first 7/1/4 interface is the function, the later ones its slaves. */
START_TEST(bind_siblings)
{
	struct usbdesc_device dev = {.num_ifaces = 4};
	static const uint8_t triples[4][3] = {{7, 1, 2}, {7, 1, 4}, {0xff, 4, 1}, {7, 1, 4}};

	for (unsigned i = 0; i < 4; i++) {
		dev.ifaces[i].number = (uint8_t)i;
		dev.ifaces[i].cls = triples[i][0];
		dev.ifaces[i].subclass = triples[i][1];
		dev.ifaces[i].protocol = triples[i][2];
	}
	ck_assert_str_eq(bind_lookup(&dev, &dev.ifaces[0])->name, "printer");
	ck_assert_str_eq(bind_lookup(&dev, &dev.ifaces[1])->name, "ippusb");
	ck_assert_str_eq(bind_lookup(&dev, &dev.ifaces[1])->kind, "scanner");
	ck_assert_str_eq(bind_lookup(&dev, &dev.ifaces[2])->name, "usb");
	ck_assert_ptr_null(bind_union_master(&dev, 0));
	ck_assert_ptr_null(bind_union_master(&dev, 1));
	ck_assert_ptr_null(bind_union_master(&dev, 2));
	ck_assert_ptr_eq(bind_union_master(&dev, 3), &dev.ifaces[1]);
}
END_TEST

Suite *escl_suite(void)
{
	Suite *s = suite_create("escl");
	TCase *tc = tcase_create("escl");

	tcase_add_test(tc, parse_caps);
	tcase_add_loop_test(tc, malformed_xml, 0, (int)(sizeof(bad_xml) / sizeof(bad_xml[0])));
	tcase_add_test(tc, deep_and_odd);
	tcase_add_test(tc, parse_status);
	tcase_add_test(tc, settings);
	tcase_add_test(tc, scan_request_roundtrip);
	tcase_add_test(tc, bind_siblings);
	suite_add_tcase(s, tc);
	return s;
}
