// SPDX-License-Identifier: GPL-2.0
/*
 * C glue for src/dm: each function wraps a static inline or macro that
 * bindgen cannot turn into something Rust can call.  No logic lives here.
 */
#include <linux/bio.h>
#include <linux/blkdev.h>
#include <linux/device-mapper.h>
#include <linux/dm-io.h>
#include <linux/ioprio.h>
#include <linux/ktime.h>
#include <linux/module.h>
#include <linux/wait.h>
#include <linux/workqueue.h>
#include "dm-bio-record.h"
#include "dm_mirror_rs.h"

const blk_status_t DMMR_BLK_STS_OK = BLK_STS_OK;
const blk_status_t DMMR_BLK_STS_IOERR = BLK_STS_IOERR;
const blk_status_t DMMR_BLK_STS_NOTSUPP = BLK_STS_NOTSUPP;
const blk_status_t DMMR_BLK_STS_INVAL = BLK_STS_INVAL;
const blk_status_t DMMR_BLK_STS_DM_REQUEUE = BLK_STS_DM_REQUEUE;

void *dmmr_per_bio_data(struct bio *bio, size_t size)
{
	return dm_per_bio_data(bio, size);
}

enum req_op dmmr_bio_op(const struct bio *bio)
{
	return bio_op(bio);
}

bool dmmr_bio_is_write(const struct bio *bio)
{
	return bio_data_dir(bio) == WRITE;
}

bool dmmr_bio_is_readahead(const struct bio *bio)
{
	return bio->bi_opf & REQ_RAHEAD;
}

bool dmmr_bio_has_preflush(const struct bio *bio)
{
	return bio->bi_opf & REQ_PREFLUSH;
}

/* The flags dm-raid1 passes on to every leg with a write. */
blk_opf_t dmmr_bio_write_flags(const struct bio *bio)
{
	return bio->bi_opf & (REQ_FUA | REQ_PREFLUSH | REQ_ATOMIC);
}

unsigned int dmmr_bio_sectors(const struct bio *bio)
{
	return bio_sectors(bio);
}

void dmmr_bio_remap(struct bio *bio, struct block_device *bdev, sector_t sector)
{
	bio_set_dev(bio, bdev);
	bio->bi_iter.bi_sector = sector;
}

void dmmr_bio_set_status(struct bio *bio, blk_status_t status)
{
	bio->bi_status = status;
}

blk_opf_t dmmr_write_opf(blk_opf_t flags, bool discard)
{
	return (discard ? REQ_OP_DISCARD : REQ_OP_WRITE) | flags;
}

/* mirror_flush()'s flags: an empty, synchronous preflush. */
blk_opf_t dmmr_flush_flags(void)
{
	return REQ_PREFLUSH | REQ_SYNC;
}

u64 dmmr_ktime_ns(void)
{
	return ktime_get_ns();
}

unsigned short dmmr_ioprio_default(void)
{
	return IOPRIO_DEFAULT;
}

unsigned int dmmr_bdev_major(const struct block_device *bdev)
{
	return MAJOR(bdev->bd_dev);
}

unsigned int dmmr_bdev_minor(const struct block_device *bdev)
{
	return MINOR(bdev->bd_dev);
}

/*
 * dm_io_request has a union and nested structs; filling it here keeps the
 * Rust side free of union writes.  A write without data (discard, empty
 * flush) uses DM_IO_KMEM with a NULL address, as dm-raid1 does.
 */
void dmmr_io_request_init(struct dm_io_request *req, blk_opf_t opf, struct bio *bio,
			  bool no_data, io_notify_fn fn, void *context,
			  struct dm_io_client *client)
{
	memset(req, 0, sizeof(*req));
	req->bi_opf = opf;
	if (no_data) {
		req->mem.type = DM_IO_KMEM;
		req->mem.ptr.addr = NULL;
	} else {
		req->mem.type = DM_IO_BIO;
		req->mem.ptr.bio = bio;
	}
	req->notify.fn = fn;
	req->notify.context = context;
	req->client = client;
}

/* As dm-raid1: a per-CPU, reclaim-safe queue, one per mirror set. */
struct workqueue_struct *dmmr_alloc_workqueue(const char *name)
{
	return alloc_workqueue("%s", WQ_MEM_RECLAIM | WQ_PERCPU, 0, name);
}

void dmmr_init_work(struct work_struct *work, work_func_t fn)
{
	INIT_WORK(work, fn);
}

bool dmmr_queue_work(struct workqueue_struct *wq, struct work_struct *work)
{
	return queue_work(wq, work);
}

void dmmr_flush_workqueue(struct workqueue_struct *wq)
{
	flush_workqueue(wq);
}

static DECLARE_WAIT_QUEUE_HEAD(dmmr_recovery_stopped);

void dmmr_wake_recovery_waiters(void *context)
{
	wake_up_all(&dmmr_recovery_stopped);
}

void dmmr_wait_recovery_stopped(struct dm_region_hash *rh)
{
	wait_event(dmmr_recovery_stopped, !dm_rh_recovery_in_flight(rh));
}

/* Same name, default and meaning as dm-raid1's parameter. */
DECLARE_DM_KCOPYD_THROTTLE_WITH_MODULE_PARM(raid1_resync_throttle,
	"A percentage of time allocated for raid resynchronization");

struct dm_kcopyd_throttle *dmmr_resync_throttle(void)
{
	return &dm_kcopyd_throttle;
}

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

void dmmr_submit_bio(struct bio *bio)
{
	submit_bio_noacct(bio);
}
