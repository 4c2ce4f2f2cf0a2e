// Publish n bytes for the other core in four ways (plain memcpy, non-temporal
// stores, memcpy then clwb, memcpy then clflushopt), alone and followed by the
// other core reading them. gcc -O2 -mavx512f -mclwb -mclflushopt publish-variants.c
#define _GNU_SOURCE
#include <immintrin.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#define MAXN (16u << 20)
static volatile long *flags; static char *shared[2]; static long phase_count;
static double now(void){struct timespec t;clock_gettime(CLOCK_MONOTONIC,&t);return t.tv_sec+t.tv_nsec*1e-9;}
static void barrier(int me){long target=++phase_count;__atomic_store_n(&flags[me*16],target,__ATOMIC_RELEASE);while(__atomic_load_n(&flags[(1-me)*16],__ATOMIC_ACQUIRE)<target){}}
static void pin(int c){cpu_set_t s;CPU_ZERO(&s);CPU_SET(c,&s);sched_setaffinity(0,sizeof s,&s);}
static void publish(int how, char *dst, const char *src, size_t n){
  if(how==0){memcpy(dst,src,n);return;}
  if(how==1){for(size_t o=0;o<n;o+=64){__m512i v=_mm512_load_si512((const void*)(src+o));_mm512_stream_si512((void*)(dst+o),v);} _mm_sfence();return;}
  memcpy(dst,src,n);
  if(how==2){for(size_t o=0;o<n;o+=64)_mm_clwb(dst+o);}
  if(how==3){for(size_t o=0;o<n;o+=64)_mm_clflushopt(dst+o);}
  _mm_sfence();
}
int main(void){
  size_t sizes[]={65536,262144,524288,1<<20,2<<20,4<<20,16<<20};int ns=7;
  char *m=mmap(0,4096+2*(size_t)MAXN,PROT_READ|PROT_WRITE,MAP_SHARED|MAP_ANONYMOUS,-1,0);memset(m,0,4096+2*(size_t)MAXN);
  flags=(volatile long*)m;shared[0]=m+4096;shared[1]=m+4096+MAXN;
  pid_t pid=fork();int me=pid==0;pin(me);
  char *src=aligned_alloc(4096,MAXN),*dst=aligned_alloc(4096,MAXN);memset(src,1+me,MAXN);memset(dst,0,MAXN);
  if(!me)printf("%10s | publish: %8s %8s %8s %8s | publish+fetch: %8s %8s %8s %8s  (us, rank 0)\n","bytes","plain","nt","clwb","clflush","plain","nt","clwb","clflush");
  for(int i=0;i<ns;i++){size_t n=sizes[i];int reps=(int)((256u<<20)/n);if(reps>2000)reps=2000;double tp[4],tf[4];
    for(int how=0;how<4;how++)for(int f=0;f<2;f++)for(int w=0;w<2;w++){barrier(me);double t0=now();
      for(int k=0;k<reps;k++){publish(how,shared[me],src,n);barrier(me);if(f){memcpy(dst,shared[1-me],n);barrier(me);}}
      double t=(now()-t0)/reps*1e6; if(f)tf[how]=t; else tp[how]=t;}
    if(!me)printf("%10zu |          %8.2f %8.2f %8.2f %8.2f |                %8.2f %8.2f %8.2f %8.2f\n",n,tp[0],tp[1],tp[2],tp[3],tf[0],tf[1],tf[2],tf[3]);}
  if(!me)wait(0);return 0;}
