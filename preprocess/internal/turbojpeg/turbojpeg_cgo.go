//go:build cgo && !noturbojpeg

package turbojpeg

/*
#cgo LDFLAGS: -lturbojpeg -ljpeg -lpthread
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <malloc.h>
#include <turbojpeg.h>
#include <jpeglib.h>

// LK_CANCELLED is a job's code when its caller gave up (lk_cancel).
#define LK_CANCELLED 100
// LK_MAX_SCANS is TJFLAG_LIMITSCANS's limit, a second line behind the
// caller's own count.
#define LK_MAX_SCANS 500

// A decode handed to the C decoding threads (decodeOffP). src and dst are
// Go memory, pinned by the caller until done is signalled.
typedef struct lk_job {
	const unsigned char *src;
	unsigned long src_size;
	unsigned char *dst;
	int w, h, num, denom, cmyk, fast;
	int cancel; // set by lk_cancel, read by the decode between rows
	int rc, code; // 0, or -1 and TJERR_WARNING, TJERR_FATAL or LK_CANCELLED
	char msg[JMSG_LENGTH_MAX];
	int done_fd; // eventfd written once the decode is over
	struct lk_job *next;
} lk_job;

static void lk_cancel(lk_job *j) { __atomic_store_n(&j->cancel, 1, __ATOMIC_RELAXED); }

typedef struct lk_err {
	struct jpeg_error_mgr pub;
	jmp_buf jb;
	int warned;
	char msg[JMSG_LENGTH_MAX];
} lk_err;

typedef struct lk_prog {
	struct jpeg_progress_mgr pub;
	lk_job *job;
} lk_prog;

static void lk_error_exit(j_common_ptr c) {
	lk_err *e = (lk_err *)c->err;
	(*c->err->format_message)(c, e->msg);
	longjmp(e->jb, 1);
}

// Warnings (premature end of data, junk between markers) let the decode go
// on, as tjDecompress2 does; the first one is kept for the error.
static void lk_emit_message(j_common_ptr c, int level) {
	lk_err *e = (lk_err *)c->err;
	if (level < 0 && !e->warned) {
		(*c->err->format_message)(c, e->msg);
		e->warned = 1;
	}
}

// lk_progress runs between rows of every pass: where a cancelled decode
// stops, and where scans are counted.
static void lk_progress(j_common_ptr c) {
	lk_prog *p = (lk_prog *)c->progress;
	lk_err *e = (lk_err *)c->err;
	if (__atomic_load_n(&p->job->cancel, __ATOMIC_RELAXED)) {
		p->job->code = LK_CANCELLED;
		snprintf(e->msg, sizeof e->msg, "cancelled");
		longjmp(e->jb, 1);
	}
	if (((j_decompress_ptr)c)->input_scan_number > LK_MAX_SCANS) {
		snprintf(e->msg, sizeof e->msg, "more than %d scans", LK_MAX_SCANS);
		longjmp(e->jb, 1);
	}
}

// lk_dec is a decoding thread's decompressor, kept from one job to the
// next as a TurboJPEG handle is: its permanent allocations stay put, so
// the large per-image blocks land where the last image's were.
typedef struct lk_dec {
	struct jpeg_decompress_struct d;
	lk_err e;
	lk_prog p;
} lk_dec;

static void lk_dec_init(lk_dec *x) {
	memset(x, 0, sizeof *x);
	x->d.err = jpeg_std_error(&x->e.pub);
	x->e.pub.error_exit = lk_error_exit;
	x->e.pub.emit_message = lk_emit_message;
	x->p.pub.progress_monitor = lk_progress;
	jpeg_create_decompress(&x->d);
	x->d.progress = &x->p.pub;
}

// lk_decompress decodes j as tjDecompress2 does (scale, TJFLAG_FASTDCT and
// TJFLAG_FASTUPSAMPLE, RGB or CMYK out), through the libjpeg API so that a
// progress monitor can stop it.
static void lk_decompress(lk_dec *x, lk_job *j) {
	j_decompress_ptr d = &x->d;
	x->e.warned = 0;
	x->e.msg[0] = 0;
	x->p.job = j;
	j->code = TJERR_FATAL;
	if (setjmp(x->e.jb)) {
		j->rc = -1;
		snprintf(j->msg, sizeof j->msg, "%s", x->e.msg);
		jpeg_abort_decompress(d);
		return;
	}
	jpeg_mem_src(d, j->src, j->src_size);
	jpeg_read_header(d, TRUE);
	d->out_color_space = j->cmyk ? JCS_CMYK : JCS_EXT_RGB;
	d->scale_num = j->num;
	d->scale_denom = j->denom;
	d->dct_method = j->fast ? JDCT_FASTEST : JDCT_ISLOW;
	d->do_fancy_upsampling = j->fast ? FALSE : TRUE;
	jpeg_start_decompress(d);
	if ((int)d->output_width != j->w || (int)d->output_height != j->h) {
		snprintf(x->e.msg, sizeof x->e.msg, "scaled size %ux%u, expected %dx%d", d->output_width, d->output_height, j->w, j->h);
		longjmp(x->e.jb, 1);
	}
	size_t pitch = (size_t)j->w * (size_t)d->output_components;
	while (d->output_scanline < d->output_height) {
		JSAMPROW rows[16];
		int n = d->rec_outbuf_height;
		if (n > 16) n = 16;
		if (n > (int)(d->output_height - d->output_scanline)) n = d->output_height - d->output_scanline;
		for (int k = 0; k < n; k++) rows[k] = j->dst + (size_t)(d->output_scanline + k) * pitch;
		jpeg_read_scanlines(d, rows, n);
	}
	jpeg_finish_decompress(d);
	j->rc = 0;
	if (x->e.warned) {
		j->rc = -1;
		j->code = TJERR_WARNING;
		snprintf(j->msg, sizeof j->msg, "%s", x->e.msg);
	}
}

// The decoding threads and their queue: a process resource, like the
// library's allocator, shared by every caller. A thread is started when a
// job finds none spare, so as many decodes run at once as are asked for
// (the caller bounds them); threads stay for the next ones.
static pthread_mutex_t lk_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t lk_cv = PTHREAD_COND_INITIALIZER;
static lk_job *lk_head, *lk_tail;
static int lk_spare; // threads waiting for a job, less the jobs queued for them

static void *lk_worker(void *arg) {
	(void)arg;
	lk_dec *x = malloc(sizeof *x);
	if (x != NULL) lk_dec_init(x);
	pthread_mutex_lock(&lk_mu);
	for (;;) {
		while (lk_head == NULL) pthread_cond_wait(&lk_cv, &lk_mu);
		lk_job *j = lk_head;
		lk_head = j->next;
		if (lk_head == NULL) lk_tail = NULL;
		pthread_mutex_unlock(&lk_mu);
		if (x == NULL) {
			j->rc = -1;
			j->code = TJERR_FATAL;
			snprintf(j->msg, sizeof j->msg, "out of memory for a decompressor");
		} else {
			lk_decompress(x, j);
		}
		int fd = j->done_fd; // j belongs to the caller again once signalled
		uint64_t one = 1;
		pthread_mutex_lock(&lk_mu);
		lk_spare++;
		pthread_mutex_unlock(&lk_mu);
		while (write(fd, &one, sizeof one) < 0 && errno == EINTR) {
		}
		pthread_mutex_lock(&lk_mu);
	}
	return NULL;
}

// lk_submit queues j for a decoding thread, starting one when none is
// spare; 0, or pthread_create's error (j is then not queued).
static int lk_submit(lk_job *j) {
	j->next = NULL;
	pthread_mutex_lock(&lk_mu);
	if (lk_spare > 0) {
		lk_spare--;
	} else {
		pthread_attr_t a;
		pthread_t t;
		pthread_attr_init(&a);
		pthread_attr_setdetachstate(&a, PTHREAD_CREATE_DETACHED);
		int err = pthread_create(&t, &a, lk_worker, NULL);
		pthread_attr_destroy(&a);
		if (err != 0) {
			pthread_mutex_unlock(&lk_mu);
			return err;
		}
	}
	if (lk_tail != NULL) lk_tail->next = j; else lk_head = j;
	lk_tail = j;
	pthread_cond_signal(&lk_cv);
	pthread_mutex_unlock(&lk_mu);
	return 0;
}
*/
import "C"

import (
	"context"
	"fmt"
	"os"
	"runtime"
	"syscall"
	"time"
	"unsafe"
)

// Available reports whether libjpeg-turbo is linked in.
func Available() bool { return true }

// KeepFreedMemory tunes the C allocator (glibc malloc) that libjpeg uses
// for the process: blocks up to 32 MiB come from the heap rather than
// fresh mmaps, and freed memory is kept rather than handed back to the
// kernel while less than trim bytes lie free. A progressive JPEG is
// decoded through full-size coefficient arrays (40 MB for 13 MP) that
// glibc otherwise maps and unmaps (or trims) around every image: each
// decode then zero-fills ~10,000 fresh pages, measured here as 3.5x the
// CPU of the decode itself on repeated 13 MP photos. The price is that
// the process keeps its peak decode memory (about 100 MB per concurrent
// 16 MP progressive decode).
//
// The trim threshold holds for glibc's main arena only: the other arenas
// (one per thread, up to 8 per core) unmap a 64 MB heap whenever it
// empties. Run the process with MALLOC_ARENA_MAX=1 (OneArena), which glibc
// reads at start; a mallopt later cannot move threads already bound to an
// arena, nor stop new ones taking over those of threads that ended.
func KeepFreedMemory(trim int) error {
	if C.mallopt(C.M_MMAP_THRESHOLD, C.int(32<<20)) != 1 {
		return fmt.Errorf("turbojpeg: mallopt(M_MMAP_THRESHOLD) refused")
	}
	if C.mallopt(C.M_TRIM_THRESHOLD, C.int(trim)) != 1 {
		return fmt.Errorf("turbojpeg: mallopt(M_TRIM_THRESHOLD) refused")
	}
	return nil
}

func errorOf(h C.tjhandle, what string) error {
	return tjError(C.tjGetErrorCode(h), what, C.GoString(C.tjGetErrorStr2(h)))
}

// tjError is a libjpeg-turbo failure while doing what: ErrWarning when the
// library only warned (code TJERR_WARNING).
func tjError(code C.int, what, msg string) error {
	if code == C.TJERR_WARNING {
		return fmt.Errorf("%w: %s: %s", ErrWarning, what, msg)
	}
	return fmt.Errorf("turbojpeg: %s: %s", what, msg)
}

// DecodeHeader reads the JPEG header.
func DecodeHeader(jpeg []byte) (Header, error) {
	if len(jpeg) == 0 {
		return Header{}, fmt.Errorf("turbojpeg: empty input")
	}
	h := C.tjInitDecompress()
	if h == nil {
		return Header{}, fmt.Errorf("turbojpeg: init: %s", C.GoString(C.tjGetErrorStr2(nil)))
	}
	defer C.tjDestroy(h)
	var w, ht, ss, cs C.int
	if C.tjDecompressHeader3(h, (*C.uchar)(unsafe.Pointer(&jpeg[0])), C.ulong(len(jpeg)), &w, &ht, &ss, &cs) != 0 {
		return Header{}, errorOf(h, "reading header")
	}
	return Header{Width: int(w), Height: int(ht), Colorspace: Colorspace(cs)}, nil
}

// Factors lists the scaling factors the library supports, largest first.
func Factors() []Factor {
	var n C.int
	p := C.tjGetScalingFactors(&n)
	if p == nil || n <= 0 {
		return nil
	}
	sf := unsafe.Slice(p, int(n))
	out := make([]Factor, 0, len(sf))
	for _, f := range sf {
		out = append(out, Factor{Num: int(f.num), Denom: int(f.denom)})
	}
	return out
}

// DecodeRGB decodes jpeg at scale f into packed RGB (3 bytes a pixel),
// reusing dst when it is large enough. It returns the pixels and the decoded
// size. fast selects the faster, slightly less exact DCT and upsampling.
// CMYK and YCCK images are decoded to CMYK (4 bytes a pixel, so dst is
// sized for that) and converted to RGB in place. A progressive JPEG of more
// than 500 scans is refused (as TJFLAG_LIMITSCANS does). When ctx ends, the
// decode stops between two rows of its current pass and DecodeRGB returns
// an error wrapping ctx.Err().
func DecodeRGB(ctx context.Context, jpeg []byte, f Factor, fast bool, dst []byte) (pix []byte, w, h int, err error) {
	hdr, err := DecodeHeader(jpeg) // the decode itself runs on a decoding thread
	if err != nil {
		return dst, 0, 0, err
	}
	cmyk := hdr.Colorspace == CMYK || hdr.Colorspace == YCCK
	w, h = f.Scaled(hdr.Width), f.Scaled(hdr.Height)
	px := 3
	if cmyk {
		px = 4
	}
	n := w * h * px
	if n <= 0 {
		return dst, 0, 0, fmt.Errorf("turbojpeg: bad scaled size %dx%d", w, h)
	}
	if cap(dst) < n {
		dst = make([]byte, n)
	}
	dst = dst[:n]
	if err := decodeOffP(ctx, jpeg, dst, w, h, f, cmyk, fast); err != nil {
		return dst, 0, 0, err
	}
	if cmyk {
		dst = cmykToRGB(dst)
	}
	return dst, w, h, nil
}

// decodeOffP decompresses on one of the package's C threads while the
// calling goroutine waits on an eventfd through the network poller, holding
// no P. A decode of a large photo takes tens of milliseconds; made as a cgo
// call it holds its P in a system call all along, and the runtime's sysmon
// retakes that P each time and, having found work, drops back to waking
// every 20 us: under bench-e2e the preprocess service's sysmon woke ~1,000
// times a second (3% of a core) for that alone. The cgo call that queues
// the job is over in microseconds.
func decodeOffP(ctx context.Context, jpeg, dst []byte, w, h int, f Factor, cmyk, fast bool) error {
	efd, _, e := syscall.Syscall(syscall.SYS_EVENTFD2, 0, syscall.O_NONBLOCK|syscall.O_CLOEXEC, 0)
	if e != 0 {
		return fmt.Errorf("turbojpeg: eventfd: %w", e)
	}
	done := os.NewFile(efd, "turbojpeg-decode") // non-blocking: read through the poller
	defer done.Close()
	job := (*C.lk_job)(C.calloc(1, C.sizeof_lk_job))
	if job == nil {
		return fmt.Errorf("turbojpeg: out of memory for a decode job")
	}
	defer C.free(unsafe.Pointer(job))
	var pin runtime.Pinner // the C thread reads jpeg and writes dst until done is signalled
	defer pin.Unpin()
	pin.Pin(&jpeg[0])
	pin.Pin(&dst[0])
	job.src, job.src_size = (*C.uchar)(unsafe.Pointer(&jpeg[0])), C.ulong(len(jpeg))
	job.dst, job.w, job.h = (*C.uchar)(unsafe.Pointer(&dst[0])), C.int(w), C.int(h)
	job.num, job.denom, job.cmyk, job.fast = C.int(f.Num), C.int(f.Denom), cBool(cmyk), cBool(fast)
	job.done_fd = C.int(efd)
	if errno := C.lk_submit(job); errno != 0 {
		return fmt.Errorf("turbojpeg: starting a decoding thread: %w", syscall.Errno(errno))
	}
	cancelled := make(chan struct{})
	stop := context.AfterFunc(ctx, func() {
		C.lk_cancel(job)
		close(cancelled)
	})
	// The job, jpeg and dst are the C thread's until it signals: wait for
	// that whatever happens. Should the poller fail us, wait on the
	// descriptor itself; returning early would free what the thread writes.
	var buf [8]byte
	if _, err := done.Read(buf[:]); err != nil {
		for {
			if _, err := syscall.Read(int(efd), buf[:]); err == nil {
				break
			}
			time.Sleep(time.Millisecond)
		}
	}
	if !stop() {
		<-cancelled // lk_cancel has the job: wait before it is freed
	}
	if job.rc != 0 {
		if job.code == C.LK_CANCELLED {
			return fmt.Errorf("turbojpeg: decoding stopped: %w", ctx.Err())
		}
		return tjError(job.code, "decoding", C.GoString(&job.msg[0]))
	}
	return nil
}

func cBool(v bool) C.int {
	if v {
		return 1
	}
	return 0
}
