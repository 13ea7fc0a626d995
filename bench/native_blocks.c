/* Live native blocks of 128 kB and more, by the call stack that allocated them (`make soak-native`).
 *
 * Preloaded into the soak (LD_PRELOAD), it wraps glibc's malloc family: each block of BIG_BYTES or more is
 * recorded with its caller's stack (backtrace, DEPTH frames) until freed. `native_blocks_dump(path)`, called
 * by bench/soak.py at each sample, writes one entry per call stack: blocks and bytes still live, blocks
 * allocated in all, and the frames as library+offset (symbol where exported). Comparing two dumps names the
 * code that keeps more and more memory, which tracemalloc cannot see (FFmpeg's frames, OpenVINO's tensors).
 * Smaller blocks are not recorded: the soak's growth is in frame-sized blocks, and skipping the rest keeps
 * the cost to a backtrace per large block.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <execinfo.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

extern void *__libc_malloc(size_t);
extern void __libc_free(void *);
extern void *__libc_calloc(size_t, size_t);
extern void *__libc_realloc(void *, size_t);
extern void *__libc_memalign(size_t, size_t);

#define BIG_BYTES (128 * 1024) /* glibc's first mmap threshold */
#define DEPTH 10
#define MAX_BLOCKS (1 << 20) /* open addressing; a runner holds a few thousand large blocks */
#define MAX_STACKS (1 << 14)
#define FREED ((void *)1)    /* a tombstone: the probe goes on past it */

typedef struct { void *ptr; size_t size; int stack; } Block;
typedef struct { void *frames[DEPTH]; int depth; long live; long bytes; long allocated; } Stack;

static Block blocks[MAX_BLOCKS];
static Stack stacks[MAX_STACKS];
static volatile int table_lock;
static __thread int inside; /* backtrace() and the dump allocate: not recorded */
static int ready;

static void lock(void) { while (__sync_lock_test_and_set(&table_lock, 1)) {} }
static void unlock(void) { __sync_lock_release(&table_lock); }

static size_t slot_of(void *ptr) {
    uint64_t x = (uintptr_t)ptr;
    x ^= x >> 17;
    x *= 0x9E3779B97F4A7C15ull;
    return (x >> 20) & (MAX_BLOCKS - 1);
}

static int stack_of(void **frames, int depth) { /* under the lock */
    uint64_t h = 1469598103934665603ull;
    for (int i = 0; i < depth; i++) { h = (h ^ (uintptr_t)frames[i]) * 1099511628211ull; }
    for (size_t j = 0; j < MAX_STACKS; j++) {
        size_t k = (h + j) & (MAX_STACKS - 1);
        Stack *s = &stacks[k];
        if (s->depth == 0) { memcpy(s->frames, frames, depth * sizeof(void *)); s->depth = depth; return (int)k; }
        if (s->depth == depth && !memcmp(s->frames, frames, depth * sizeof(void *))) return (int)k;
    }
    return -1;
}

static void record(void *ptr, size_t size) {
    if (!ptr || size < BIG_BYTES || inside || !ready) return;
    inside = 1;
    void *frames[DEPTH + 2];
    int depth = backtrace(frames, DEPTH + 2) - 2; /* without record() and the wrapper */
    if (depth > 0) {
        lock();
        int k = stack_of(frames + 2, depth);
        if (k >= 0) {
            for (size_t j = 0, i = slot_of(ptr); j < MAX_BLOCKS; j++, i = (i + 1) & (MAX_BLOCKS - 1)) {
                if (blocks[i].ptr == NULL || blocks[i].ptr == FREED) {
                    blocks[i] = (Block){ptr, size, k};
                    stacks[k].live++, stacks[k].bytes += (long)size, stacks[k].allocated++;
                    break;
                }
            }
        }
        unlock();
    }
    inside = 0;
}

static void forget(void *ptr) {
    if (!ptr || !ready) return;
    lock();
    for (size_t j = 0, i = slot_of(ptr); j < MAX_BLOCKS && blocks[i].ptr; j++, i = (i + 1) & (MAX_BLOCKS - 1)) {
        if (blocks[i].ptr == ptr) {
            stacks[blocks[i].stack].live--, stacks[blocks[i].stack].bytes -= (long)blocks[i].size;
            blocks[i].ptr = FREED;
            break;
        }
    }
    unlock();
}

__attribute__((constructor)) static void start(void) {
    void *frames[2];
    inside = 1;
    backtrace(frames, 2); /* loads the unwinder now, not inside a malloc */
    inside = 0;
    ready = 1;
}

void *malloc(size_t n) { void *p = __libc_malloc(n); record(p, n); return p; }
void free(void *p) { forget(p); __libc_free(p); }
void *calloc(size_t count, size_t n) { void *p = __libc_calloc(count, n); record(p, count * n); return p; }
void *realloc(void *old, size_t n) { forget(old); void *p = __libc_realloc(old, n); record(p, n); return p; }
void *memalign(size_t align, size_t n) { void *p = __libc_memalign(align, n); record(p, n); return p; }
void *aligned_alloc(size_t align, size_t n) { void *p = __libc_memalign(align, n); record(p, n); return p; }
int posix_memalign(void **out, size_t align, size_t n) {
    void *p = __libc_memalign(align, n);
    if (!p) return ENOMEM;
    record(p, n);
    *out = p;
    return 0;
}

/* One entry per call stack still holding blocks (or that allocated many): "stack K live N bytes B
 * allocated A", then its frames. Returns 0, or -1 when the file cannot be written. */
int native_blocks_dump(const char *path) {
    static Stack copy[MAX_STACKS];
    inside = 1;
    FILE *out = fopen(path, "w");
    if (!out) { inside = 0; return -1; }
    lock();
    memcpy(copy, stacks, sizeof(stacks));
    unlock();
    for (int k = 0; k < MAX_STACKS; k++) {
        const Stack *s = &copy[k];
        if (!s->depth || (s->live <= 0 && s->allocated < 1000)) continue;
        fprintf(out, "stack %d live %ld bytes %ld allocated %ld\n", k, s->live, s->bytes, s->allocated);
        for (int i = 0; i < s->depth; i++) {
            Dl_info info;
            if (dladdr(s->frames[i], &info) && info.dli_fname) {
                const char *name = strrchr(info.dli_fname, '/');
                fprintf(out, "  %s+0x%lx %s\n", name ? name + 1 : info.dli_fname,
                        (unsigned long)((char *)s->frames[i] - (char *)info.dli_fbase), info.dli_sname ? info.dli_sname : "?");
            } else {
                fprintf(out, "  %p ?\n", s->frames[i]);
            }
        }
    }
    fclose(out);
    inside = 0;
    return 0;
}
