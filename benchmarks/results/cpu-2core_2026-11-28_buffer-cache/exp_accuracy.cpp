#define CPU_CAPABILITY AVX512
#define CPU_CAPABILITY_AVX512
#include <ATen/cpu/vec/vec.h>
#include <ATen/cpu/vec/functional.h>
#include <cmath>
#include <cstdio>
#include <cstring>
namespace t { inline namespace CPU_CAPABILITY {
using at::vec::Vectorized;
#include "expfn.inc"  // exp_float and tanh_float cut from csrc/cpu/kernels_impl.h (see run.sh)
}}
static double ulp_err(float got, double exact){ float e=(float)exact; if(std::isinf(e)) return 0; float nx=std::nextafter(e, INFINITY); double ulp = (double)nx-(double)e; return std::fabs(got-exact)/ulp;}
int main(){
  using V=at::vec::Vectorized<float>;
  double worst=0, worst_x=0; double worst_t=0, worst_tx=0;
  for (double xd=-87.3; xd<88.3; xd+=1e-5*1.3) {
    alignas(64) float in[16], out[16], out2[16];
    for(int l=0;l<16;++l) in[l]=(float)(xd+l*1e-6);
    t::exp_float(V::loadu(in)).store(out);
    for(int l=0;l<16;++l){ double e=ulp_err(out[l], std::exp((double)in[l])); if(e>worst){worst=e;worst_x=in[l];} }
  }
  for (double xd=-12; xd<12; xd+=1e-6*1.3) {
    alignas(64) float in[16], out[16];
    for(int l=0;l<16;++l) in[l]=(float)(xd+l*1e-7);
    t::tanh_float(V::loadu(in)).store(out);
    for(int l=0;l<16;++l){ double e=ulp_err(out[l], std::tanh((double)in[l])); if(e>worst_t){worst_t=e;worst_tx=in[l];} }
  }
  alignas(64) float in[16]={NAN, INFINITY, -INFINITY, 100.f, -100.f, 0.f, -0.f, 88.f}; alignas(64) float out[16];
  t::exp_float(V::loadu(in)).store(out); for(int l=0;l<8;++l) printf("exp(%g)=%g ", in[l], out[l]); printf("\n");
  t::tanh_float(V::loadu(in)).store(out); for(int l=0;l<8;++l) printf("tanh(%g)=%g ", in[l], out[l]); printf("\n");
  printf("exp worst %.3f ulp at %g; tanh worst %.3f ulp at %g\n", worst, worst_x, worst_t, worst_tx);
}
