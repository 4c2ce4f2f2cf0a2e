#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
// one-round all-pairs vs recursive doubling vs MPI_Allreduce, float sum, n bytes
static double now(){return MPI_Wtime();}
int main(int c,char**v){
  MPI_Init(&c,&v); int r,p; MPI_Comm_rank(MPI_COMM_WORLD,&r); MPI_Comm_size(MPI_COMM_WORLD,&p);
  int iters=2000;
  size_t sizes[]={8,64,512,2048,4096,8192,16384,32768};
  for(int si=0;si<8;si++){
    size_t nb=sizes[si]; int k=nb/4;
    float *in=malloc(nb),*out=malloc(nb),*tmp=malloc(nb*p);
    for(int i=0;i<k;i++) in[i]=r+i;
    MPI_Request req[64];
    double t[3]={1e9,1e9,1e9};
    for(int rep=0;rep<5;rep++) for(int a=0;a<3;a++){
      MPI_Barrier(MPI_COMM_WORLD);
      double s=now();
      for(int it=0;it<iters/ (nb>4096?4:1);it++){
        if(a==0){ MPI_Allreduce(in,out,k,MPI_FLOAT,MPI_SUM,MPI_COMM_WORLD);}
        else if(a==1){ // recursive doubling
          memcpy(out,in,nb);
          for(int m=1;m<p;m<<=1){ int q=r^m; MPI_Sendrecv(out,k,MPI_FLOAT,q,1,tmp,k,MPI_FLOAT,q,1,MPI_COMM_WORLD,MPI_STATUS_IGNORE); for(int i=0;i<k;i++) out[i]+=tmp[i]; }
        } else { int nr=0;
          for(int q=0;q<p;q++) if(q!=r) MPI_Irecv(tmp+(size_t)q*k,k,MPI_FLOAT,q,2,MPI_COMM_WORLD,&req[nr++]);
          for(int d=1;d<p;d++){int q=(r+d)%p; MPI_Isend(in,k,MPI_FLOAT,q,2,MPI_COMM_WORLD,&req[nr++]);}
          MPI_Waitall(nr,req,MPI_STATUSES_IGNORE);
          memcpy(tmp+(size_t)r*k,in,nb);
          memcpy(out,tmp,nb); for(int q=1;q<p;q++) for(int i=0;i<k;i++) out[i]+=tmp[(size_t)q*k+i];
        }
      }
      double e=(now()-s)/(iters/(nb>4096?4:1));
      MPI_Allreduce(MPI_IN_PLACE,&e,1,MPI_DOUBLE,MPI_MAX,MPI_COMM_WORLD);
      if(e<t[a]) t[a]=e; // min over reps
    }
    if(r==0) printf("%6zu B  vendor %7.1f  rd %7.1f  allpairs %7.1f us  ap/vendor %.2f\n",nb,t[0]*1e6,t[1]*1e6,t[2]*1e6,t[2]/t[0]);
    free(in);free(out);free(tmp);
  }
  MPI_Finalize();
}
