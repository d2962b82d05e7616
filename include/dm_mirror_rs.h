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
#include <linux/ktime.h>

/* Macros that are casts bindgen cannot evaluate. */
extern const blk_status_t DMMR_BLK_STS_OK;
extern const blk_status_t DMMR_BLK_STS_IOERR;
extern const blk_status_t DMMR_BLK_STS_NOTSUPP;
extern const blk_status_t DMMR_BLK_STS_INVAL;
extern const blk_status_t DMMR_BLK_STS_DM_REQUEUE;

/* Static inlines of the block layer and dm core. */
void *dmmr_per_bio_data(struct bio *bio, size_t size);
enum req_op dmmr_bio_op(const struct bio *bio);
bool dmmr_bio_is_write(const struct bio *bio);
bool dmmr_bio_is_readahead(const struct bio *bio);
bool dmmr_bio_has_preflush(const struct bio *bio);
blk_opf_t dmmr_bio_write_flags(const struct bio *bio);
unsigned int dmmr_bio_sectors(const struct bio *bio);
void dmmr_bio_remap(struct bio *bio, struct block_device *bdev, sector_t sector);
void dmmr_bio_set_status(struct bio *bio, blk_status_t status);
blk_opf_t dmmr_write_opf(blk_opf_t flags, bool discard);
blk_opf_t dmmr_flush_flags(void);
u64 dmmr_ktime_ns(void);
unsigned short dmmr_ioprio_default(void);
unsigned int dmmr_bdev_major(const struct block_device *bdev);
unsigned int dmmr_bdev_minor(const struct block_device *bdev);
void dmmr_io_request_init(struct dm_io_request *req, blk_opf_t opf, struct bio *bio,
			  bool no_data, io_notify_fn fn, void *context,
			  struct dm_io_client *client);


/* Work queues: macros and inlines. */
struct workqueue_struct *dmmr_alloc_workqueue(const char *name);
void dmmr_init_work(struct work_struct *work, work_func_t fn);
bool dmmr_queue_work(struct workqueue_struct *wq, struct work_struct *work);
void dmmr_flush_workqueue(struct workqueue_struct *wq);

/* Recovery waiters (dm-raid1's _kmirrord_recovery_stopped). */
void dmmr_wake_recovery_waiters(void *context);
void dmmr_wait_recovery_stopped(struct dm_region_hash *rh);

/* The kcopyd throttle behind the raid1_resync_throttle module parameter. */
struct dm_kcopyd_throttle *dmmr_resync_throttle(void);

/* drivers/md/dm-bio-record.h, for retrying a failed read. */
struct dmmr_bio_details {
	/* Opaque storage for struct dm_bio_details. */
	unsigned long words[8];
};
void dmmr_bio_record(struct dmmr_bio_details *bd, struct bio *bio);
void dmmr_bio_restore(struct dmmr_bio_details *bd, struct bio *bio);
void dmmr_submit_bio(struct bio *bio);

#endif /* DM_MIRROR_RS_H */
