/* tls-cost: what a TLS 1.3 stream costs in CPU per GiB on this host, sender
 * and receiver apart (two processes over TCP loopback, 4 GiB per run).
 * Not built by CMake; a measuring aid behind the figures in README.md
 * ("The receiver's memmove...").
 *
 *   openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
 *       -keyout k.pem -out c.pem -days 2 -subj /CN=x
 *   gcc -O2 -o tls-cost tls-cost.c -lssl -lcrypto
 *   RA=34 ./tls-cost MODE [RECORD]     (RA: read-ahead buffer in KiB; unset: off)
 *
 * MODE 0: 1 MiB SSL_writes, the records copied out of a memory BIO and
 * sent (as common/conn.c does), SSL_read into 1 MiB.  3: 4,116-byte frames,
 * one SSL_write each, read as 16 + 4096 + 4 bytes (the secondary's reads).
 * 4: the same frames copied together into 16 KiB writes.  1: AES-128-GCM
 * records of RECORD bytes with EVP out of place, no TLS record layer.
 * 2: plain TCP. */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/socket.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>
#include <openssl/ssl.h>
#include <openssl/evp.h>
#include <openssl/err.h>
#define TOTAL (4ull<<30)
#define CH (1u<<20)
static double cpu(void){struct rusage r;getrusage(RUSAGE_SELF,&r);return r.ru_utime.tv_sec+r.ru_utime.tv_usec/1e6+r.ru_stime.tv_sec+r.ru_stime.tv_usec/1e6;}
static void sendall(int fd,const void*b,size_t n){const char*p=b;while(n){ssize_t k=send(fd,p,n,0);if(k<=0){perror("send");exit(1);}p+=k;n-=k;}}
static void recvall(int fd,void*b,size_t n){char*p=b;while(n){ssize_t k=recv(fd,p,n,0);if(k<=0){perror("recv");exit(1);}p+=k;n-=k;}}
static unsigned char key[16]="0123456789abcdef", iv0[12]="abcdefghijkl";
int main(int argc,char**argv){
  int mode=atoi(argv[1]); size_t rec = argc>2? strtoul(argv[2],0,0): CH;
  int ls=socket(AF_INET,SOCK_STREAM,0); struct sockaddr_in a={.sin_family=AF_INET,.sin_addr.s_addr=htonl(0x7f000001)}; int one=1;
  setsockopt(ls,SOL_SOCKET,SO_REUSEADDR,&one,4); bind(ls,(void*)&a,sizeof a); socklen_t al=sizeof a; getsockname(ls,(void*)&a,&al); listen(ls,1);
  pid_t pid=fork();
  char *src=aligned_alloc(4096,CH), *buf=aligned_alloc(4096,CH+4096), *dst=aligned_alloc(4096,CH);
  memset(src,0x5a,CH); for(size_t i=0;i<CH;i++) src[i]=rand();
  if(pid==0){ /* sender */
    int fd=socket(AF_INET,SOCK_STREAM,0); connect(fd,(void*)&a,sizeof a); setsockopt(fd,IPPROTO_TCP,TCP_NODELAY,&one,4);
    double c0;
    if(mode==0||mode==3||mode==4){
      SSL_CTX*ctx=SSL_CTX_new(TLS_client_method()); SSL_CTX_set_min_proto_version(ctx,TLS1_3_VERSION); SSL_CTX_set_ciphersuites(ctx,"TLS_AES_128_GCM_SHA256");
      SSL*s=SSL_new(ctx); SSL_set_fd(s,fd); if(SSL_connect(s)!=1){ERR_print_errors_fp(stderr);exit(1);} BIO*wb=BIO_new(BIO_s_mem()); SSL_set0_wbio(s,wb);
      c0=cpu();
      if(mode==3){ for(size_t done=0;done<TOTAL;done+=4096){ size_t w; if(SSL_write_ex(s,src+(done%CH),4116,&w)!=1) exit(1); if(BIO_pending(wb)>200000){int k; while((k=BIO_read(wb,buf,CH))>0) sendall(fd,buf,k);} } {int k; while((k=BIO_read(wb,buf,CH))>0) sendall(fd,buf,k);} }
      else if(mode==4){ for(size_t done=0;done<TOTAL;done+=16384){ size_t w; for(int q=0;q<4;q++) memcpy(dst+q*4116,src+(done%CH),4116); size_t off=0; while(off<4*4116){ size_t n=4*4116-off>16384?16384:4*4116-off; if(SSL_write_ex(s,dst+off,n,&w)!=1) exit(1); off+=w;} if(BIO_pending(wb)>200000){int k; while((k=BIO_read(wb,buf,CH))>0) sendall(fd,buf,k);} } {int k; while((k=BIO_read(wb,buf,CH))>0) sendall(fd,buf,k);} }
      else
      for(size_t done=0;done<TOTAL;done+=CH){ size_t off=0; while(off<CH){size_t w; size_t n=CH-off>256*1024?256*1024:CH-off; if(SSL_write_ex(s,src+off,n,&w)!=1){ERR_print_errors_fp(stderr);exit(1);} off+=w; int k; while((k=BIO_read(wb,buf,CH))>0) sendall(fd,buf,k);} }
    } else if(mode==2){ c0=cpu(); for(size_t done=0;done<TOTAL;done+=rec) sendall(fd,src,rec);
    } else {
      EVP_CIPHER_CTX*e=EVP_CIPHER_CTX_new(); EVP_EncryptInit_ex(e,EVP_aes_128_gcm(),NULL,key,iv0);
      c0=cpu(); uint64_t seq=0;
      for(size_t done=0;done<TOTAL;done+=rec){ unsigned char iv[12]; memcpy(iv,iv0,12); seq++; for(int i=0;i<8;i++) iv[4+i]^=seq>>(56-8*i);
        uint32_t len=rec; memcpy(buf,&len,4); int ol; EVP_EncryptInit_ex(e,NULL,NULL,NULL,iv); EVP_EncryptUpdate(e,NULL,&ol,(void*)buf,4);
        EVP_EncryptUpdate(e,(void*)buf+4,&ol,(void*)src+(done%CH),rec); EVP_EncryptFinal_ex(e,(void*)buf+4+rec,&ol); EVP_CIPHER_CTX_ctrl(e,EVP_CTRL_GCM_GET_TAG,16,buf+4+rec);
        sendall(fd,buf,4+rec+16);}
    }
    double c=cpu()-c0; fprintf(stderr,"sender   mode %d rec %zu: %.3f CPU-s/GiB\n",mode,rec,c/(TOTAL>>30)); exit(0);
  }
  int fd=accept(ls,0,0); double c0;
  if(mode==0||mode==3||mode==4){
    SSL_CTX*ctx=SSL_CTX_new(TLS_server_method()); SSL_CTX_use_certificate_file(ctx,"c.pem",SSL_FILETYPE_PEM); SSL_CTX_use_PrivateKey_file(ctx,"k.pem",SSL_FILETYPE_PEM);
    if(getenv("RA")){SSL_CTX_set_read_ahead(ctx,1); SSL_CTX_set_default_read_buffer_len(ctx,atoi(getenv("RA"))*1024);} SSL_CTX_set_num_tickets(ctx,0);
    SSL*s=SSL_new(ctx); SSL_set_fd(s,fd); if(SSL_accept(s)!=1){ERR_print_errors_fp(stderr);exit(1);}
    c0=cpu(); if(mode!=0){ size_t tot = mode==3? TOTAL/4096*4116 : TOTAL/16384*4*4116; size_t sz[3]={16,4096,4}; int q=0; for(size_t done=0;done<tot;){ size_t got, want=sz[q%3], have=0; while(have<want){ if(SSL_read_ex(s,dst+have,want-have,&got)!=1){ERR_print_errors_fp(stderr);exit(1);} have+=got;} done+=want; q++; } } else
    for(size_t done=0;done<TOTAL;){ size_t got; if(SSL_read_ex(s,dst,CH,&got)!=1){ERR_print_errors_fp(stderr);exit(1);} done+=got; }
  } else if(mode==2){ c0=cpu(); for(size_t done=0;done<TOTAL;done+=rec) recvall(fd,dst,rec);
  } else {
    EVP_CIPHER_CTX*d=EVP_CIPHER_CTX_new(); EVP_DecryptInit_ex(d,EVP_aes_128_gcm(),NULL,key,iv0); uint64_t seq=0;
    c0=cpu(); for(size_t done=0;done<TOTAL;done+=rec){ recvall(fd,buf,4+rec+16); unsigned char iv[12]; memcpy(iv,iv0,12); seq++; for(int i=0;i<8;i++) iv[4+i]^=seq>>(56-8*i);
      int ol; EVP_DecryptInit_ex(d,NULL,NULL,NULL,iv); EVP_DecryptUpdate(d,NULL,&ol,(void*)buf,4); EVP_DecryptUpdate(d,(void*)dst,&ol,(void*)buf+4,rec);
      EVP_CIPHER_CTX_ctrl(d,EVP_CTRL_GCM_SET_TAG,16,buf+4+rec); if(EVP_DecryptFinal_ex(d,(void*)dst+rec,&ol)!=1){fprintf(stderr,"tag\n");exit(1);} }
  }
  double c=cpu()-c0; int st; waitpid(pid,&st,0); fprintf(stderr,"receiver mode %d rec %zu: %.3f CPU-s/GiB\n",mode,rec,c/(TOTAL>>30)); return 0;
}
