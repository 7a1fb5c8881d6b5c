// Streaming-read memory bandwidth: T threads each sum their slice of one buffer (64-bit adds the
// compiler vectorises), `passes` times per repetition; prints one JSON line with GB/s (1e9 bytes/s)
// per repetition. Compiled at bench time by bench/sections/bandwidth.ts:
//   cc -O3 -march=native -pthread bench/membw.c -o bench/out/membw && bench/out/membw <bytes> <threads> <reps> <passes>

#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef struct {
  const uint64_t *p;
  size_t n;
  int passes;
  uint64_t sum;
} Slice;

static pthread_barrier_t start_line;

static void *reader(void *arg) {
  Slice *s = arg;
  pthread_barrier_wait(&start_line);
  uint64_t a0 = 0, a1 = 0, a2 = 0, a3 = 0;
  for (int k = 0; k < s->passes; k++) {
    for (size_t i = 0; i + 4 <= s->n; i += 4) {
      a0 += s->p[i];
      a1 += s->p[i + 1];
      a2 += s->p[i + 2];
      a3 += s->p[i + 3];
    }
  }
  s->sum = a0 + a1 + a2 + a3;
  return NULL;
}

static double now(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec + t.tv_nsec * 1e-9;
}

int main(int argc, char **argv) {
  if (argc < 5) {
    fprintf(stderr, "usage: %s <bytes> <threads> <reps> <passes>\n", argv[0]);
    return 2;
  }
  size_t bytes = strtoull(argv[1], NULL, 10) & ~(size_t)255;
  int threads = atoi(argv[2]), reps = atoi(argv[3]), passes = atoi(argv[4]);
  uint64_t *buf = aligned_alloc(4096, bytes);
  if (!buf) {
    fprintf(stderr, "cannot allocate %zu bytes\n", bytes);
    return 1;
  }
  memset(buf, 1, bytes); // touch every page before timing
  size_t words = bytes / 8, per = words / threads;
  uint64_t check = 0;
  printf("{\"bytes\":%zu,\"threads\":%d,\"passes\":%d,\"gbps\":[", bytes, threads, passes);
  for (int r = 0; r < reps; r++) {
    pthread_t tid[64];
    Slice sl[64];
    pthread_barrier_init(&start_line, NULL, threads + 1);
    for (int t = 0; t < threads; t++) {
      sl[t] = (Slice){buf + t * per, per, passes, 0};
      pthread_create(&tid[t], NULL, reader, &sl[t]);
    }
    pthread_barrier_wait(&start_line);
    double t0 = now();
    for (int t = 0; t < threads; t++) {
      pthread_join(tid[t], NULL);
      check += sl[t].sum;
    }
    double dt = now() - t0;
    pthread_barrier_destroy(&start_line);
    printf("%s%.3f", r ? "," : "", (double)per * 8 * threads * passes / dt / 1e9);
  }
  printf("],\"check\":%llu}\n", (unsigned long long)(check & 0xffff));
  free(buf);
  return 0;
}
