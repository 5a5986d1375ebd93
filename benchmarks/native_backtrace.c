/* Loaded with LD_PRELOAD into a process that may crash (benchmarks/
 * native_backtrace.py): on a fatal signal it writes the native stack to
 * stderr, since the GPU machine has no gdb and Python's faulthandler prints
 * Python frames alone. Python's faulthandler, where enabled, runs first and
 * then hands the signal back to the handler it replaced: this one. */
#include <execinfo.h>
#include <signal.h>
#include <string.h>
#include <unistd.h>

static void write_str(const char* s) { (void)!write(2, s, strlen(s)); }

static void on_fatal(int sig) {
  char line[64] = "native_backtrace: signal ";
  char digits[8];
  int n = 0, v = sig;
  do { digits[n++] = (char)('0' + v % 10); v /= 10; } while (v > 0 && n < 7);
  size_t at = strlen(line);
  while (n > 0) line[at++] = digits[--n];
  line[at++] = '\n';
  line[at] = '\0';
  write_str(line);
  void* frames[64];
  int count = backtrace(frames, 64);
  backtrace_symbols_fd(frames, count, 2);
  write_str("native_backtrace: end\n");
  signal(sig, SIG_DFL);  /* die of the same signal, so the exit status says which */
  raise(sig);
}

__attribute__((constructor)) static void install(void) {
  const int sigs[] = {SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGABRT};
  for (unsigned i = 0; i < sizeof(sigs) / sizeof(sigs[0]); ++i) signal(sigs[i], on_fatal);
}
