/*
 * The e2e node's sandbox ("pause") container: holds a pod's namespaces open
 * and reaps zombies until it is told to stop. Built statically by
 * e2e/controlplane/build.sh and packed into an image by e2e/node/images.sh.
 */
#include <signal.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

static void stop(int sig) { (void)sig; _exit(0); }

static void reap(int sig) {
  (void)sig;
  while (waitpid(-1, NULL, WNOHANG) > 0) {
  }
}

int main(int argc, char **argv) {
  (void)argc;
  (void)argv;
  if (getpid() != 1) {
    /* Still works, but nothing would reap orphans: say so. */
    static const char msg[] = "pause: not running as pid 1\n";
    (void)write(2, msg, sizeof msg - 1);
  }
  struct sigaction sa = {0};
  sa.sa_handler = stop;
  sigaction(SIGINT, &sa, NULL);
  sigaction(SIGTERM, &sa, NULL);
  sa.sa_handler = reap;
  sa.sa_flags = SA_NOCLDSTOP;
  sigaction(SIGCHLD, &sa, NULL);
  for (;;) pause();
  return 1;
}
