// How fast bytes move between the two cores: the data movement every
// 2-rank shared-memory all-reduce must make, against the memcpy roofline.
// Two processes pinned to cores 0 and 1 share a mapping. Per size n, R
// iterations of each pattern, both processes at once, a spin barrier
// between steps (timed on rank 0, barrier included as in an all-reduce):
//   local    each copies n bytes private -> private (bench's memcpy subject)
//   publish  each copies n private bytes into its shared buffer
//   fetch    each copies the n bytes the other just published into a
//            private buffer (lines dirty in the other core's cache)
//   swap     publish, barrier, fetch: what a two-copy exchange moves
// gcc -O2 xcopy.c -o xcopy && ./xcopy
#define _GNU_SOURCE
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define MAXN (16u << 20)
struct ctl { volatile long arrive[2][16]; };
static struct ctl *ctl;
static char *shared[2];
static long phase_count;

static double now(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec + t.tv_nsec * 1e-9; }

static void barrier(int me) {
  long target = ++phase_count;
  __atomic_store_n(&ctl->arrive[me][0], target, __ATOMIC_RELEASE);
  while (__atomic_load_n(&ctl->arrive[1 - me][0], __ATOMIC_ACQUIRE) < target) { }
}

static void pin(int core) { cpu_set_t s; CPU_ZERO(&s); CPU_SET(core, &s); sched_setaffinity(0, sizeof s, &s); }

int main(void) {
  size_t sizes[] = {65536, 131072, 262144, 524288, 1 << 20, 2 << 20, 4 << 20, 8 << 20, 16 << 20};
  int nsizes = sizeof sizes / sizeof sizes[0];
  char *m = mmap(0, 4096 + 2 * (size_t)MAXN, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  ctl = (struct ctl *)m;
  memset(m, 0, 4096 + 2 * (size_t)MAXN);
  shared[0] = m + 4096;
  shared[1] = m + 4096 + MAXN;
  pid_t pid = fork();
  int me = pid == 0 ? 1 : 0;
  pin(me);
  char *src = aligned_alloc(4096, MAXN), *dst = aligned_alloc(4096, MAXN);
  memset(src, 1 + me, MAXN);
  memset(dst, 0, MAXN);
  if (me == 0) printf("%10s %10s %10s %10s %10s   (us per iteration, rank 0)\n", "bytes", "local", "publish", "fetch", "swap");
  for (int i = 0; i < nsizes; i++) {
    size_t n = sizes[i];
    int reps = (int)((256u << 20) / n); if (reps > 2000) reps = 2000;
    double t[4];
    for (int pat = 0; pat < 4; pat++) {
      for (int warm = 0; warm < 2; warm++) {
        barrier(me);
        double t0 = now();
        for (int k = 0; k < reps; k++) {
          char *mine = shared[me], *theirs = shared[1 - me];
          switch (pat) {
          case 0: memcpy(dst, src, n); barrier(me); break;
          case 1: memcpy(mine, src, n); barrier(me); break;
          case 2: memcpy(dst, theirs, n); barrier(me); memcpy(mine, src, n); barrier(me); break;
          case 3: memcpy(mine, src, n); barrier(me); memcpy(dst, theirs, n); barrier(me); break;
          }
        }
        t[pat] = (now() - t0) / reps * 1e6;
      }
    }
    // fetch (pattern 2) includes a re-publish to dirty the lines again.
    t[2] -= t[1];
    if (me == 0) printf("%10zu %10.2f %10.2f %10.2f %10.2f\n", n, t[0], t[1], t[2], t[3]);
  }
  if (me == 0) wait(0);
  return 0;
}
