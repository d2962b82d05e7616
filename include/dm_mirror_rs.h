/* SPDX-License-Identifier: GPL-2.0 */
/*
 * The C side that bindgen reads for dm-mirror-rs: the device-mapper headers
 * the module talks to, plus the few helpers (src/dm/helpers.c) that wrap
 * static inlines and macros Rust cannot call.
 *
 * Only src/dm/ uses what this generates.
 */
#ifndef DM_MIRROR_RS_H
#define DM_MIRROR_RS_H

#include <linux/bio.h>
#include <linux/blk_types.h>
#include <linux/device-mapper.h>
#include <linux/dm-io.h>
#include <linux/dm-dirty-log.h>
#include <linux/dm-kcopyd.h>
#include <linux/dm-region-hash.h>
#include <linux/workqueue.h>

#ifdef __BINDGEN__
/*
 * Macros with casts that bindgen cannot evaluate, as constants it can: the
 * kernel's RUST_CONST_HELPER_ convention (rust/bindings/bindings_helper.h);
 * Kbuild strips the prefix from the generated names.  Only bindgen reads
 * these definitions.
 */
const blk_status_t RUST_CONST_HELPER_BLK_STS_OK = BLK_STS_OK;
const blk_status_t RUST_CONST_HELPER_BLK_STS_IOERR = BLK_STS_IOERR;
const blk_status_t RUST_CONST_HELPER_BLK_STS_NOTSUPP = BLK_STS_NOTSUPP;
const blk_status_t RUST_CONST_HELPER_BLK_STS_INVAL = BLK_STS_INVAL;
const blk_status_t RUST_CONST_HELPER_BLK_STS_DM_REQUEUE = BLK_STS_DM_REQUEUE;
const blk_opf_t RUST_CONST_HELPER_REQ_OP_MASK = REQ_OP_MASK;
const blk_opf_t RUST_CONST_HELPER_REQ_FUA = REQ_FUA;
const blk_opf_t RUST_CONST_HELPER_REQ_PREFLUSH = REQ_PREFLUSH;
const blk_opf_t RUST_CONST_HELPER_REQ_ATOMIC = REQ_ATOMIC;
const blk_opf_t RUST_CONST_HELPER_REQ_RAHEAD = REQ_RAHEAD;
const blk_opf_t RUST_CONST_HELPER_REQ_SYNC = REQ_SYNC;
#endif

/* Static inlines of the block layer and dm core. */
void dmmr_bio_remap(struct bio *bio, struct block_device *bdev, sector_t sector);
unsigned short dmmr_ioprio_default(void);
void dmmr_io_request_init(struct dm_io_request *req, blk_opf_t opf, struct bio *bio,
			  bool no_data, io_notify_fn fn, void *context,
			  struct dm_io_client *client);
void dmmr_io_request_init_buf(struct dm_io_request *req, blk_opf_t opf, void *buf,
			      io_notify_fn fn, void *context, struct dm_io_client *client);
void dmmr_bio_copy_data(struct bio *bio, void *buf);
void dmmr_rh_mark_sector_nosync(struct dm_region_hash *rh, sector_t sector);


/* Work queues: macros and inlines. */
struct workqueue_struct *dmmr_alloc_workqueue(const char *name, unsigned int flags);
void dmmr_init_work(struct work_struct *work, work_func_t fn);
bool dmmr_queue_work(struct workqueue_struct *wq, struct work_struct *work);
void dmmr_init_delayed_work(struct delayed_work *dwork, work_func_t fn);
bool dmmr_queue_delayed_work(struct workqueue_struct *wq, struct delayed_work *dwork,
			     unsigned int msecs);
bool dmmr_queue_delayed_work_within(struct workqueue_struct *wq, struct delayed_work *dwork,
				    unsigned int msecs);
void dmmr_flush_workqueue(struct workqueue_struct *wq);

/*
 * dm-mod's reserved_bio_based_ios parameter: how many bios and ios each
 * dm-io client keeps in reserve. Exported by dm.c, declared in its private
 * drivers/md/dm.h.
 */
unsigned int dm_get_reserved_bio_based_ios(void);

/* Recovery waiters (dm-raid1's _kmirrord_recovery_stopped). */
void dmmr_wake_recovery_waiters(void *context);
void dmmr_wait_recovery_stopped(struct dm_region_hash *rh);

/*
 * String module parameters (DMMR_STRING_PARAM in src/dm/helpers.c): room for
 * a value, NUL included, and the readers, which copy the value (truncated to
 * size - 1 bytes, NUL-terminated) under the module's parameter lock.
 */
#define DMMR_STRING_PARAM_MAX 128
void dmmr_param_read_default_io_balance(char *buf, size_t size);
void dmmr_param_read_hot_region_idle_ms(char *buf, size_t size);

/* The kcopyd throttle behind the raid1_resync_throttle module parameter. */
struct dm_kcopyd_throttle *dmmr_resync_throttle(void);

/* drivers/md/dm-bio-record.h, for retrying a failed read. */
struct dmmr_bio_details {
	/* Opaque storage for struct dm_bio_details. */
	unsigned long words[8];
};
void dmmr_bio_record(struct dmmr_bio_details *bd, struct bio *bio);
void dmmr_bio_restore(struct dmmr_bio_details *bd, struct bio *bio);

#endif /* DM_MIRROR_RS_H */
