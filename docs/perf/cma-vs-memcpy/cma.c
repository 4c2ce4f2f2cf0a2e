#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>
#include <unistd.h>
#include <time.h>
#include <sys/wait.h>
#include <sys/mman.h>
static double now(){struct timespec t;clock_gettime(CLOCK_MONOTONIC,&t);return t.tv_sec+t.tv_nsec*1e-9;}
int main(){
  size_t sizes[]={65536,262144,1<<20,4<<20,8<<20};
  int *shared=mmap(0,4096,PROT_READ|PROT_WRITE,MAP_SHARED|MAP_ANONYMOUS,-1,0);
  char *src=aligned_alloc(2<<20,16<<20); madvise(src,16<<20,MADV_HUGEPAGE); memset(src,1,16<<20);
  pid_t pid=fork();
  if(pid==0){ while(!shared[0]) usleep(1000); return 0;}
  char *dst=aligned_alloc(2<<20,16<<20); madvise(dst,16<<20,MADV_HUGEPAGE); memset(dst,0,16<<20);
  for(int i=0;i<5;i++){ size_t n=sizes[i]; int reps= (64<<20)/n;
    struct iovec l={dst,n}, r={src,n};
    process_vm_readv(pid,&l,1,&r,1,0);
    double t0=now(); for(int k=0;k<reps;k++){ if(process_vm_readv(pid,&l,1,&r,1,0)!=(ssize_t)n){perror("cma");return 1;} }
    double t1=now(); for(int k=0;k<reps;k++){ memcpy(dst,src,n); __asm__ volatile(""::"r"(dst):"memory");}
    double t2=now();
    // chunked 64K
    double t3=now(); for(int k=0;k<reps;k++){ for(size_t o=0;o<n;o+=65536){ struct iovec l2={dst+o,65536}, r2={src+o,65536}; process_vm_readv(pid,&l2,1,&r2,1,0);} }
    double t4=now();
    printf("%8zu cma %8.2f us  memcpy %8.2f us  cma64K %8.2f us\n",n,(t1-t0)/reps*1e6,(t2-t1)/reps*1e6,(t4-t3)/reps*1e6);
  }
  shared[0]=1; wait(0); return 0;}
