/*
 * USB Video Class (UVC 1.0/1.1/1.5) wire formats the webcam driver reads:
 * the class-specific VideoControl and VideoStreaming descriptors, the
 * probe/commit control block and the payload header of streamed data.
 * Like usbdesc.c it trusts no length: a descriptor that does not fit is an
 * error, a format or control it does not know is skipped.
 *
 * Numbers and layouts are from the UVC 1.1 and 1.5 specifications
 * (section 3.7 VideoControl, 3.9 VideoStreaming, 4.3.1.1 probe/commit,
 * 2.4.3.3 payload header, appendix A codes).
 */
#ifndef PLUGFS_UVCDESC_H
#define PLUGFS_UVCDESC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define UVC_SC_VIDEOCONTROL   0x01
#define UVC_SC_VIDEOSTREAMING 0x02

#define UVC_MAX_STREAMING 8
#define UVC_MAX_FORMATS	  8
#define UVC_MAX_FRAMES	  24
#define UVC_MAX_INTERVALS 16
#define UVC_MAX_CONTROLS  40

/* Class-specific requests (A.8). */
enum uvc_request {
	UVC_SET_CUR = 0x01,
	UVC_GET_CUR = 0x81,
	UVC_GET_MIN = 0x82,
	UVC_GET_MAX = 0x83,
	UVC_GET_RES = 0x84,
	UVC_GET_LEN = 0x85,
	UVC_GET_INFO = 0x86,
	UVC_GET_DEF = 0x87,
};

/* VideoStreaming interface control selectors (A.9.7). */
enum { UVC_VS_PROBE_CONTROL = 0x01, UVC_VS_COMMIT_CONTROL = 0x02 };

/* Payload header bmHeaderInfo bits (2.4.3.3). */
#define UVC_PH_FID 0x01
#define UVC_PH_EOF 0x02
#define UVC_PH_PTS 0x04
#define UVC_PH_SCR 0x08
#define UVC_PH_ERR 0x40
#define UVC_PH_EOH 0x80

/* Formats the driver can hand out. */
enum uvc_format_kind {
	UVC_FORMAT_OTHER = 0, /* described but not served (H.264, NV12...) */
	UVC_FORMAT_MJPEG = 1,
	UVC_FORMAT_YUY2 = 2,
};

struct uvc_frame {
	uint8_t index; /* bFrameIndex */
	uint16_t width, height;
	uint32_t max_frame_size;   /* dwMaxVideoFrameBufferSize */
	uint32_t default_interval; /* 100 ns units */
	/*
	 * Discrete intervals (bFrameIntervalType > 0), or continuous ones:
	 * intervals[0..2] = min, max, step.
	 */
	bool continuous;
	uint8_t num_intervals;
	uint32_t intervals[UVC_MAX_INTERVALS];
};

struct uvc_format {
	uint8_t index; /* bFormatIndex */
	uint8_t kind;  /* enum uvc_format_kind */
	uint8_t default_frame;
	uint8_t num_frames;
	struct uvc_frame frames[UVC_MAX_FRAMES];
};

/* One VideoStreaming interface (its altsetting 0 descriptors). */
struct uvc_streaming {
	uint8_t endpoint; /* from the input header */
	uint8_t num_formats;
	struct uvc_format formats[UVC_MAX_FORMATS];
};

/* A control of the camera terminal or the processing unit, as the driver offers it. */
struct uvc_control {
	const char *name; /* brightness */
	uint8_t unit;	  /* bTerminalID / bUnitID */
	uint8_t selector;
	uint8_t size; /* bytes of GET_CUR/SET_CUR */
	bool is_signed;
	bool bitmap; /* exposure_auto: one bit of GET_RES, no min/max */
};

struct uvc_control_info {
	uint16_t bcd_uvc;
	uint8_t num_streaming;
	uint8_t streaming[UVC_MAX_STREAMING]; /* baInterfaceNr */
	uint8_t camera_id, processing_id;     /* 0: none */
	uint32_t camera_controls, processing_controls;
	unsigned num_controls;
	struct uvc_control controls[UVC_MAX_CONTROLS];
};

/*
 * Parses the class-specific descriptors in buf[0..len) (a VideoControl
 * interface's descriptors: itself, what follows, its endpoints; others are
 * skipped).  Returns 0 or -EINVAL with *why; no header is an error.
 */
int uvcdesc_parse_control(const uint8_t *buf, size_t len, struct uvc_control_info *vc, const char **why);

/* The same for a VideoStreaming interface's altsetting 0. */
int uvcdesc_parse_streaming(const uint8_t *buf, size_t len, struct uvc_streaming *vs, const char **why);

/* "mjpeg", "yuyv", or NULL for a kind the driver does not serve. */
const char *uvc_format_name(uint8_t kind);

/* Frame rate of an interval (100 ns units) in 1/1000 frames per second. */
uint32_t uvc_interval_mfps(uint32_t interval);

/* Writes "30", "7.5" or "0.2" for an interval; returns snprintf's count. */
int uvc_interval_format(char *buf, size_t cap, uint32_t interval);

/*
 * The interval of `frame` nearest to `mfps` (1/1000 fps) if it is within
 * 1% of it: 0 and *interval, or -EINVAL.
 */
int uvc_frame_pick_interval(const struct uvc_frame *frame, uint32_t mfps, uint32_t *interval);

/* Parses "mjpeg 1280x720 30" (rate may be "7.5"); 0 or -EINVAL. */
int uvc_parse_format_line(const char *line, uint8_t *kind, uint16_t *width, uint16_t *height, uint32_t *mfps);

/* The probe/commit block (4.3.1.1), as much of it as the driver uses. */
struct uvc_probe {
	uint16_t hint;
	uint8_t format_index, frame_index;
	uint32_t interval;
	uint32_t max_frame_size;
	uint32_t max_payload;
};

/* Its length for a device of bcdUVC: 26 (1.0), 34 (1.1), 48 (1.5). */
size_t uvc_probe_len(uint16_t bcd_uvc);
/* Encodes p into buf (uvc_probe_len bytes, the rest zero). */
void uvc_probe_encode(const struct uvc_probe *p, uint8_t *buf, size_t len);
/* Decodes what the device returned; -EINVAL when shorter than 26 bytes. */
int uvc_probe_decode(const uint8_t *buf, size_t len, struct uvc_probe *p);

/*
 * The header of one payload (a packet, or a bulk transfer): its length
 * and bits.  -EINVAL when it does not fit the payload, as a camera that
 * sends garbage would.
 */
int uvc_payload_header(const uint8_t *data, size_t len, size_t *hdr_len, uint8_t *info);

#endif
