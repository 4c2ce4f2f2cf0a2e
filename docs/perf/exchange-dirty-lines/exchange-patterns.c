#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
// exchange patterns on 2 ranks: which costs more, sending data this core just wrote (A),
// or receiving into a buffer the peer just read (B)?
int main(int c,char**v){
  MPI_Init(&c,&v); int r; MPI_Comm_rank(MPI_COMM_WORLD,&r); int q=1-r;
  size_t sizes[]={65536,131072,524288,1<<20,4<<20,16<<20};
  const char*names[]={"clean","A:send-written","B:recv-into-read","mixed(calib)","chain(A+B)"};
  for(int si=0;si<6;si++){
    size_t n=sizes[si]; char*b[4]; for(int i=0;i<4;i++){b[i]=malloc(n); memset(b[i],1,n);}
    char*src=malloc(n); memset(src,2,n);
    int iters = n<=131072?2000: (int)(200000000/n); if(iters<20) iters=20;
    double best[5]; for(int a=0;a<5;a++) best[a]=1e9;
    for(int rep=0;rep<5;rep++) for(int a=0;a<5;a++){
      MPI_Barrier(MPI_COMM_WORLD); double s=MPI_Wtime();
      for(int i=0;i<iters;i++){
        char*send,*recv;
        switch(a){
          case 0: send=b[0]; recv=b[1+(i&1)]; break;
          case 1: memcpy(b[0],src,n); send=b[0]; recv=b[1+(i&1)]; break; // A (+ a memcpy)
          case 2: send=b[i%3]; recv=b[(i+2)%3]; break; // receive into the buffer sent the iteration before (the peer read it); send what was received two iterations before
          case 3: if(i%2==0){send=b[0];recv=b[1];}else{send=b[2];recv=b[0];} break;
          default: send=b[i&1]; recv=b[(i+1)&1]; break; // send what was received last iteration
        }
        MPI_Sendrecv(send,n,MPI_BYTE,q,0,recv,n,MPI_BYTE,q,0,MPI_COMM_WORLD,MPI_STATUS_IGNORE);
      }
      double e=(MPI_Wtime()-s)/iters; MPI_Allreduce(MPI_IN_PLACE,&e,1,MPI_DOUBLE,MPI_MAX,MPI_COMM_WORLD);
      if(e<best[a]) best[a]=e;
    }
    if(r==0){printf("%9zu B",n); for(int a=0;a<5;a++) printf("  %s %8.1f",names[a],best[a]*1e6); printf("  us\n");}
    for(int i=0;i<4;i++) free(b[i]); free(src);
  }
  MPI_Finalize();
}
