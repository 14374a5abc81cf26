/* A statically linked program for the guest kit's smoke test: prints its
 * arguments and one environment variable, then exits with status 42 so the
 * test can see the status travel from the guest to run-guest.sh. */
#include <stdio.h>
#include <stdlib.h>

int main(int argc, char** argv) {
  const char* greeting = getenv("SMOKE_GREETING");
  printf("guest-smoke: hello, argc=%d", argc);
  for (int i = 1; i < argc; ++i) {
    printf(" [%s]", argv[i]);
  }
  printf(" greeting=[%s]\n", greeting ? greeting : "(unset)");
  return 42;
}
