//go:build cgo && !noturbojpeg

package turbojpeg

/*
#cgo LDFLAGS: -lturbojpeg -lpthread
#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <malloc.h>
#include <turbojpeg.h>

// A decode handed to the C decoding threads (decodeOffP). src and dst are
// Go memory, pinned by the caller until done is signalled.
typedef struct lk_job {
	const unsigned char *src;
	unsigned long src_size;
	unsigned char *dst;
	int w, h, pf, flags;
	int rc, code; // tjDecompress2's result and tjGetErrorCode on failure
	char msg[256];
	int done_fd; // eventfd written once the decode is over
	struct lk_job *next;
} lk_job;

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
	tjhandle h = tjInitDecompress();
	pthread_mutex_lock(&lk_mu);
	for (;;) {
		while (lk_head == NULL) pthread_cond_wait(&lk_cv, &lk_mu);
		lk_job *j = lk_head;
		lk_head = j->next;
		if (lk_head == NULL) lk_tail = NULL;
		pthread_mutex_unlock(&lk_mu);
		if (h == NULL) {
			j->rc = -1;
			j->code = TJERR_FATAL;
			snprintf(j->msg, sizeof j->msg, "init: %s", tjGetErrorStr2(NULL));
		} else {
			j->rc = tjDecompress2(h, j->src, j->src_size, j->dst, j->w, 0, j->h, j->pf, j->flags);
			if (j->rc != 0) {
				j->code = tjGetErrorCode(h);
				snprintf(j->msg, sizeof j->msg, "%s", tjGetErrorStr2(h));
			}
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
// than the library's scan limit (TJFLAG_LIMITSCANS) is refused.
func DecodeRGB(jpeg []byte, f Factor, fast bool, dst []byte) (pix []byte, w, h int, err error) {
	hdr, err := DecodeHeader(jpeg) // the decode itself runs on a decoding thread's own handle
	if err != nil {
		return dst, 0, 0, err
	}
	cmyk := hdr.Colorspace == CMYK || hdr.Colorspace == YCCK
	w, h = f.Scaled(hdr.Width), f.Scaled(hdr.Height)
	px, pf := 3, C.int(C.TJPF_RGB)
	if cmyk {
		px, pf = 4, C.TJPF_CMYK
	}
	n := w * h * px
	if n <= 0 {
		return dst, 0, 0, fmt.Errorf("turbojpeg: bad scaled size %dx%d", w, h)
	}
	if cap(dst) < n {
		dst = make([]byte, n)
	}
	dst = dst[:n]
	flags := C.int(C.TJFLAG_LIMITSCANS)
	if fast {
		flags |= C.TJFLAG_FASTDCT | C.TJFLAG_FASTUPSAMPLE
	}
	if err := decodeOffP(jpeg, dst, w, h, pf, flags); err != nil {
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
func decodeOffP(jpeg, dst []byte, w, h int, pf, flags C.int) error {
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
	job.dst, job.w, job.h, job.pf, job.flags = (*C.uchar)(unsafe.Pointer(&dst[0])), C.int(w), C.int(h), pf, flags
	job.done_fd = C.int(efd)
	if errno := C.lk_submit(job); errno != 0 {
		return fmt.Errorf("turbojpeg: starting a decoding thread: %w", syscall.Errno(errno))
	}
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
	if job.rc != 0 {
		return tjError(job.code, "decoding", C.GoString(&job.msg[0]))
	}
	return nil
}
