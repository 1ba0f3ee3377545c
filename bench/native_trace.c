/* Preloaded by bench/error_paths.py into a case that crashed: on SIGSEGV, SIGBUS, SIGILL or
 * SIGABRT it prints the faulting instruction and the native call stack, each frame as
 * "library+offset" (what addr2line takes), then lets the signal kill the process as before.
 * Python's faulthandler shows only Python frames; the GPU machine has no gdb.
 * Build: cc -shared -fPIC -O1 -o native_trace.so native_trace.c   (LD_PRELOAD=./native_trace.so)
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <execinfo.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <ucontext.h>

static void print_frame(const char *what, void *pc) {
  Dl_info info;
  if (dladdr(pc, &info) && info.dli_fname) {
    fprintf(stderr, "native_trace: %s %s+0x%lx (%s)\n", what, info.dli_fname,
            (unsigned long)((uintptr_t)pc - (uintptr_t)info.dli_fbase),
            info.dli_sname ? info.dli_sname : "?");
  } else {
    fprintf(stderr, "native_trace: %s %p (no object)\n", what, pc);
  }
}

static void on_signal(int sig, siginfo_t *si, void *context) {
  ucontext_t *uc = (ucontext_t *)context;
  void *pc = (void *)uc->uc_mcontext.gregs[REG_RIP];
  fprintf(stderr, "native_trace: signal %d (code %d) at address %p\n", sig, si->si_code,
          si->si_addr);
  print_frame("fault", pc);
  fflush(stderr);
  /* backtrace() itself unwinds: if the fault came from broken unwind tables it may fault
     again, which (SA_RESETHAND) just ends the process with the lines above printed. */
  void *frames[64];
  int n = backtrace(frames, 64);
  for (int i = 0; i < n; ++i) print_frame("frame", frames[i]);
  fflush(stderr);
  signal(sig, SIG_DFL);
  raise(sig);
}

__attribute__((constructor)) static void install(void) {
  static char alt[1 << 16];
  stack_t ss = {.ss_sp = alt, .ss_size = sizeof alt, .ss_flags = 0};
  sigaltstack(&ss, NULL);
  struct sigaction sa = {0};
  sa.sa_sigaction = on_signal;
  sa.sa_flags = SA_SIGINFO | SA_ONSTACK | SA_RESETHAND;
  sigemptyset(&sa.sa_mask);
  const int sigs[] = {SIGSEGV, SIGBUS, SIGILL, SIGABRT};
  for (unsigned i = 0; i < sizeof sigs / sizeof sigs[0]; ++i) sigaction(sigs[i], &sa, NULL);
}
