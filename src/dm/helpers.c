// SPDX-License-Identifier: GPL-2.0
/*
 * C glue for src/dm: each function wraps a static inline or macro that
 * bindgen cannot turn into something Rust can call (constants go through
 * include/dm_mirror_rs.h instead), and the module-parameter plumbing.  No
 * logic lives here.
 */
#include <linux/bio.h>
#include <linux/blkdev.h>
#include <linux/device-mapper.h>
#include <linux/dm-io.h>
#include <linux/ioprio.h>
#include <linux/module.h>
#include <linux/moduleparam.h>
#include <linux/string.h>
#include <linux/sysfs.h>
#include <linux/wait.h>
#include <linux/workqueue.h>
#include "dm-bio-record.h"
#include "dm_mirror_rs.h"

/* bio_set_dev() is a static inline that also clears the remap flags. */
void dmmr_bio_remap(struct bio *bio, struct block_device *bdev, sector_t sector)
{
	bio_set_dev(bio, bdev);
	bio->bi_iter.bi_sector = sector;
}

/* IOPRIO_DEFAULT calls the static inline ioprio_value(). */
unsigned short dmmr_ioprio_default(void)
{
	return IOPRIO_DEFAULT;
}

/*
 * dm_io_request has a union and nested structs; filling it here keeps the
 * Rust side free of union writes.  A write without data (discard, empty
 * flush) uses DM_IO_KMEM with a NULL address, as dm-raid1 does.
 */
static void io_request_common(struct dm_io_request *req, blk_opf_t opf, io_notify_fn fn,
			      void *context, struct dm_io_client *client)
{
	memset(req, 0, sizeof(*req));
	req->bi_opf = opf;
	req->notify.fn = fn;
	req->notify.context = context;
	req->client = client;
}

void dmmr_io_request_init(struct dm_io_request *req, blk_opf_t opf, struct bio *bio,
			  bool no_data, io_notify_fn fn, void *context,
			  struct dm_io_client *client)
{
	io_request_common(req, opf, fn, context, client);
	if (no_data) {
		req->mem.type = DM_IO_KMEM;
		req->mem.ptr.addr = NULL;
	} else {
		req->mem.type = DM_IO_BIO;
		req->mem.ptr.bio = bio;
	}
}

/*
 * The same for a write from a kernel buffer: dm-io needs to know whether it
 * is vmalloc memory (is_vmalloc_addr() is a static inline).
 */
void dmmr_io_request_init_buf(struct dm_io_request *req, blk_opf_t opf, void *buf,
			      io_notify_fn fn, void *context, struct dm_io_client *client)
{
	io_request_common(req, opf, fn, context, client);
	if (is_vmalloc_addr(buf)) {
		req->mem.type = DM_IO_VMA;
		req->mem.ptr.vma = buf;
	} else {
		req->mem.type = DM_IO_KMEM;
		req->mem.ptr.addr = buf;
	}
}

/* bio_for_each_segment() and memcpy_from_bvec() are a macro and an inline. */
void dmmr_bio_copy_data(struct bio *bio, void *buf)
{
	struct bio_vec bv;
	struct bvec_iter iter;
	char *dst = buf;

	bio_for_each_segment(bv, bio, iter) {
		memcpy_from_bvec(dst, &bv);
		dst += bv.bv_len;
	}
}

#ifndef DMMR_NO_REGION_HASH
/*
 * dm_rh_mark_nosync() finds the region through a bio; a write the target
 * issued from its own buffer has none, so give it one that carries only
 * the sector (all the function reads of it, besides the op flags).
 */
void dmmr_rh_mark_sector_nosync(struct dm_region_hash *rh, sector_t sector)
{
	struct bio bio;

	bio_init(&bio, NULL, NULL, 0, REQ_OP_WRITE);
	bio.bi_iter.bi_sector = sector;
	dm_rh_mark_nosync(rh, &bio);
}
#endif

struct workqueue_struct *dmmr_alloc_workqueue(const char *name, unsigned int flags)
{
	return alloc_workqueue("%s", flags, 0, name);
}

void dmmr_init_work(struct work_struct *work, work_func_t fn)
{
	INIT_WORK(work, fn);
}

bool dmmr_queue_work(struct workqueue_struct *wq, struct work_struct *work)
{
	return queue_work(wq, work);
}

void dmmr_init_delayed_work(struct delayed_work *dwork, work_func_t fn)
{
	INIT_DELAYED_WORK(dwork, fn);
}

bool dmmr_queue_delayed_work(struct workqueue_struct *wq, struct delayed_work *dwork,
			     unsigned int msecs)
{
	return queue_delayed_work(wq, dwork, msecs_to_jiffies(msecs));
}

/*
 * Makes dwork run within msecs: a timer set for later is brought forward
 * (mod_delayed_work), one set sooner (or an item already queued) stands, so
 * that callers at a high rate do not keep pushing the timer back.  The
 * unlocked look at the timer can only err towards an extra mod.
 */
bool dmmr_queue_delayed_work_within(struct workqueue_struct *wq, struct delayed_work *dwork,
				    unsigned int msecs)
{
	unsigned long delay = msecs_to_jiffies(msecs);

	if (delayed_work_pending(dwork) &&
	    time_before_eq(READ_ONCE(dwork->timer.expires), jiffies + delay))
		return false;
	return mod_delayed_work(wq, dwork, delay);
}

void dmmr_flush_workqueue(struct workqueue_struct *wq)
{
	flush_workqueue(wq);
}

#ifndef DMMR_NO_REGION_HASH
static DECLARE_WAIT_QUEUE_HEAD(dmmr_recovery_stopped);

void dmmr_wake_recovery_waiters(void *context)
{
	wake_up_all(&dmmr_recovery_stopped);
}

void dmmr_wait_recovery_stopped(struct dm_region_hash *rh)
{
	wait_event(dmmr_recovery_stopped, !dm_rh_recovery_in_flight(rh));
}
#endif

#ifndef DMMR_NO_KCOPYD_THROTTLE
/* Same name, default and meaning as dm-raid1's parameter. */
DECLARE_DM_KCOPYD_THROTTLE_WITH_MODULE_PARM(raid1_resync_throttle,
	"A percentage of time allocated for raid resynchronization");

struct dm_kcopyd_throttle *dmmr_resync_throttle(void)
{
	return &dm_kcopyd_throttle;
}
#else
/* A module without resync has no throttle parameter (kcopyd takes NULL). */
struct dm_kcopyd_throttle *dmmr_resync_throttle(void)
{
	return NULL;
}
#endif

/*
 * DMMR_STRING_PARAM(name, desc): a string module parameter, writable in
 * sysfs (0644).  A new value (one trailing newline, from echo, dropped)
 * replaces the old one only if the Rust check dmmr_param_check_<name>()
 * accepts it (it logs why not); sysfs calls set and get with the module's
 * parameter lock held, and dmmr_param_read_<name>() takes it to copy the
 * value out.  The Rust half is src/dm/param.rs's dm_string_param!.
 */
#define DMMR_STRING_PARAM(name, desc)						\
int dmmr_param_check_##name(const char *val, size_t len);			\
static char dmmr_param_##name[DMMR_STRING_PARAM_MAX];				\
static int dmmr_param_set_##name(const char *val,				\
				 const struct kernel_param *kp)			\
{										\
	size_t len = strlen(val);						\
	int r;									\
										\
	if (len && val[len - 1] == '\n')					\
		len--;								\
	r = dmmr_param_check_##name(val, len);					\
	if (r)									\
		return r;							\
	if (len >= DMMR_STRING_PARAM_MAX)	/* refused by the check */	\
		return -EINVAL;							\
	memcpy(dmmr_param_##name, val, len);					\
	dmmr_param_##name[len] = '\0';						\
	return 0;								\
}										\
static int dmmr_param_get_##name(char *buf, const struct kernel_param *kp)	\
{										\
	return sysfs_emit(buf, "%s\n", dmmr_param_##name);			\
}										\
static const struct kernel_param_ops dmmr_param_ops_##name = {		\
	.set = dmmr_param_set_##name,						\
	.get = dmmr_param_get_##name,						\
};										\
module_param_cb(name, &dmmr_param_ops_##name, NULL, 0644);			\
MODULE_PARM_DESC(name, desc);							\
void dmmr_param_read_##name(char *buf, size_t size)				\
{										\
	kernel_param_lock(THIS_MODULE);						\
	strscpy(buf, dmmr_param_##name, size);					\
	kernel_param_unlock(THIS_MODULE);					\
}

#ifndef DMMR_NO_IO_BALANCE_PARAM
DMMR_STRING_PARAM(default_io_balance,
	"Read policy of new mappings whose table selects none, as the words after 'io_balance' (e.g. \"adaptive\" or \"round_robin ios 128\"); empty: dm-raid1's (read the default leg)");
DMMR_STRING_PARAM(hot_region_idle_ms,
	"How long a region stays marked after its last write, so that writes to it skip the worker, in ms for new mappings (0 to 60000; 0: every write through the worker, as dm-raid1; empty: 1000)");
#endif

static_assert(sizeof(struct dm_bio_details) <= sizeof(struct dmmr_bio_details));
static_assert(__alignof__(struct dm_bio_details) <= __alignof__(struct dmmr_bio_details));

void dmmr_bio_record(struct dmmr_bio_details *bd, struct bio *bio)
{
	dm_bio_record((struct dm_bio_details *)bd, bio);
}

void dmmr_bio_restore(struct dmmr_bio_details *bd, struct bio *bio)
{
	dm_bio_restore((struct dm_bio_details *)bd, bio);
}
