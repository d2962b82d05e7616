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
