/*
 * `loopback`: a vendor-class test device (pid.codes test PID 1209:0001).
 *
 * Interface 0 (ff/ff/ff): bulk OUT 0x02, bulk IN 0x81, interrupt IN 0x83.
 * - Bytes written to an OUT endpoint go into a FIFO of EMU_LOOPBACK_FIFO
 *   bytes; the IN endpoint of the same pair (0x02 -> 0x81, 0x04 -> 0x83 on
 *   kbound) completes as soon as one byte is queued, with min(queued,
 *   buffer) bytes, in order.  An OUT that does not fit completes once INs
 *   have made room for all of it (a NAKing device).
 * - The interrupt IN endpoint never completes: a read on it blocks until
 *   the URB is discarded, which tests cancellation.
 * - Vendor requests: 0x40/0x01 stores up to 256 bytes of OUT data, 0xC0/0x02
 *   reads them back, 0xC0/0x03 returns wLength bytes of the pattern i & 0xff.
 *   Anything else stalls.
 *
 * The same ops serve `kbound`, whose interfaces each have one bulk pair.
 */
#include "emu.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define EMU_LOOPBACK_FIFO  (8u << 20)
#define LOOPBACK_STORE_MAX 256

enum loopback_request {
	LOOPBACK_REQ_STORE = 0x01,   /* 0x40: keep the OUT data */
	LOOPBACK_REQ_RECALL = 0x02,  /* 0xC0: return what was kept */
	LOOPBACK_REQ_PATTERN = 0x03, /* 0xC0: return i & 0xff */
};

struct loopback_pair {
	uint8_t out_ep, in_ep;
	struct emu_fifo fifo;
};

struct loopback {
	unsigned npairs;
	struct loopback_pair pairs[EMU_MAX_IFACES];
	uint8_t store[LOOPBACK_STORE_MAX];
	size_t store_len;
};

static int loopback_init(struct emu_dev *dev)
{
	const struct emu_model *m = dev->model;
	struct loopback *lb = calloc(1, sizeof(*lb));

	if (lb == NULL)
		return -ENOMEM;
	/* Each interface's first bulk OUT and first bulk IN form a pair. */
	for (unsigned i = 0; i < m->num_ifaces && lb->npairs < EMU_MAX_IFACES; i++) {
		struct loopback_pair *p = &lb->pairs[lb->npairs];

		for (unsigned e = 0; e < m->ifaces[i].num_eps; e++) {
			const struct emu_ep_spec *ep = &m->ifaces[i].eps[e];

			if (ep->type != 2)
				continue;
			if ((ep->address & 0x80) && p->in_ep == 0)
				p->in_ep = ep->address;
			else if (!(ep->address & 0x80) && p->out_ep == 0)
				p->out_ep = ep->address;
		}
		if (p->in_ep && p->out_ep && emu_fifo_init(&p->fifo, EMU_LOOPBACK_FIFO) == 0)
			lb->npairs++;
	}
	dev->state = lb;
	return 0;
}

static void loopback_fini(struct emu_dev *dev)
{
	struct loopback *lb = dev->state;

	if (lb == NULL)
		return;
	for (unsigned i = 0; i < lb->npairs; i++)
		emu_fifo_free(&lb->pairs[i].fifo);
	free(lb);
	dev->state = NULL;
}

static struct loopback_pair *pair_of(struct loopback *lb, uint8_t ep)
{
	for (unsigned i = 0; i < lb->npairs; i++)
		if (lb->pairs[i].in_ep == ep || lb->pairs[i].out_ep == ep)
			return &lb->pairs[i];
	return NULL;
}

/*
 * Moves bytes until nothing more can move: queued OUT URBs into the FIFO
 * as far as it has room, FIFO bytes into queued IN URBs.  Both directions
 * keep submission order, as a real endpoint does.
 */
static void loopback_pump(struct emu_dev *dev, struct loopback_pair *p)
{
	bool moved = true;

	while (moved) {
		struct emu_urb *out = emu_urb_first_pending(dev, p->out_ep);
		struct emu_urb *in = emu_urb_first_pending(dev, p->in_ep);

		moved = false;
		if (out != NULL) {
			/* urb->actual counts the bytes taken so far while it is pending. */
			size_t n = emu_fifo_put(&p->fifo, out->data + out->actual, out->length - out->actual);

			out->actual += (uint32_t)n;
			if (out->actual == out->length)
				emu_urb_complete(out, 0, out->length);
			moved = n > 0 || out->length == 0;
		}
		if (in != NULL && p->fifo.len > 0) {
			size_t n = emu_fifo_get(&p->fifo, in->data, in->length);

			emu_urb_complete(in, 0, (uint32_t)n);
			moved = true;
		}
	}
}

static void loopback_submit(struct emu_dev *dev, struct emu_urb *urb)
{
	struct loopback_pair *p = pair_of(dev->state, urb->endpoint);

	/* Endpoints outside a pair (interrupt IN) stay pending until discarded. */
	if (p != NULL)
		loopback_pump(dev, p);
}

static int loopback_control(struct emu_dev *dev, struct emu_urb *urb, const struct emu_setup *s,
			    uint8_t *data)
{
	struct loopback *lb = dev->state;
	size_t n;

	(void)urb;
	if (s->request_type == 0x40 && s->request == LOOPBACK_REQ_STORE) {
		if (s->length > LOOPBACK_STORE_MAX)
			return -EPIPE;
		memcpy(lb->store, data, s->length);
		lb->store_len = s->length;
		return s->length;
	}
	if (s->request_type == 0xc0 && s->request == LOOPBACK_REQ_RECALL) {
		n = lb->store_len < s->length ? lb->store_len : s->length;
		memcpy(data, lb->store, n);
		return (int)n;
	}
	if (s->request_type == 0xc0 && s->request == LOOPBACK_REQ_PATTERN) {
		for (unsigned i = 0; i < s->length; i++)
			data[i] = (uint8_t)i;
		return s->length;
	}
	return -EPIPE;
}

const struct emu_model_ops emu_loopback_ops = {
    .init = loopback_init,
    .fini = loopback_fini,
    .submit = loopback_submit,
    .control = loopback_control,
};

const struct emu_model emu_model_loopback = {
    .name = "loopback",
    .summary = "1209:0001 bulk 0x02 -> 0x81 loopback, interrupt 0x83 never completes, vendor requests",
    .vendor_id = 0x1209,
    .product_id = 0x0001,
    .bcd_device = 0x0100,
    .manufacturer = "plugfs",
    .product = "Loopback",
    .serial = "LB0001",
    .num_ifaces = 1,
    .ifaces = {EMU_VENDOR_IFACE},
    .ops = &emu_loopback_ops,
};
