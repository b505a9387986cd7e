/* Links Debian's LLVM 22 (as scripts/cuda-llvm.sh unpacks it), lowers a small axpy kernel to PTX
 * for sm_90 with the NVPTX back end that cubecl-cuda uses, and prints it. */
#include <llvm-c/Core.h>
#include <llvm-c/IRReader.h>
#include <llvm-c/Target.h>
#include <llvm-c/TargetMachine.h>
#include <stdio.h>
#include <string.h>
void LLVMInitializeNVPTXTargetInfo(void); void LLVMInitializeNVPTXTarget(void); void LLVMInitializeNVPTXTargetMC(void); void LLVMInitializeNVPTXAsmPrinter(void);
static const char *IR =
"target triple = \"nvptx64-nvidia-cuda\"\n"
"define ptx_kernel void @axpy(float %a, ptr addrspace(1) %x, ptr addrspace(1) %y) {\n"
"  %i = call i32 @llvm.nvvm.read.ptx.sreg.tid.x()\n"
"  %px = getelementptr float, ptr addrspace(1) %x, i32 %i\n"
"  %py = getelementptr float, ptr addrspace(1) %y, i32 %i\n"
"  %vx = load float, ptr addrspace(1) %px\n  %vy = load float, ptr addrspace(1) %py\n"
"  %m = fmul float %a, %vx\n  %s = fadd float %m, %vy\n  store float %s, ptr addrspace(1) %py\n  ret void\n}\n"
"declare i32 @llvm.nvvm.read.ptx.sreg.tid.x()\n";
int main(void){LLVMInitializeNVPTXTargetInfo();LLVMInitializeNVPTXTarget();LLVMInitializeNVPTXTargetMC();LLVMInitializeNVPTXAsmPrinter();
 LLVMContextRef c=LLVMContextCreate(); char*err=0; LLVMModuleRef m;
 LLVMMemoryBufferRef buf=LLVMCreateMemoryBufferWithMemoryRangeCopy(IR,strlen(IR),"axpy");
 if(LLVMParseIRInContext(c,buf,&m,&err)){fprintf(stderr,"parse: %s\n",err);return 1;}
 LLVMTargetRef t; if(LLVMGetTargetFromTriple("nvptx64-nvidia-cuda",&t,&err)){fprintf(stderr,"%s\n",err);return 1;}
 LLVMTargetMachineRef tm=LLVMCreateTargetMachine(t,"nvptx64-nvidia-cuda","sm_90","+ptx80",LLVMCodeGenLevelDefault,LLVMRelocDefault,LLVMCodeModelDefault);
 LLVMMemoryBufferRef out; if(LLVMTargetMachineEmitToMemoryBuffer(tm,m,LLVMAssemblyFile,&err,&out)){fprintf(stderr,"emit: %s\n",err);return 1;}
 fwrite(LLVMGetBufferStart(out),1,LLVMGetBufferSize(out),stdout); return 0;}
