/* The pod sandbox image's only program: holds the pod's namespaces, reaps orphaned children (it is PID 1 of the
 * pod when the PID namespace is shared) and exits 0 on SIGTERM or SIGINT. Built static: the image has no libc. */
#include <signal.h>
#include <stdio.h>
#include <sys/wait.h>
#include <unistd.h>

static volatile sig_atomic_t stop;

static void on_stop(int sig) { (void)sig; stop = 1; }

static void on_child(int sig) {
	(void)sig;
	while (waitpid(-1, NULL, WNOHANG) > 0) {
	}
}

int main(int argc, char **argv) {
	if (argc > 1 && argv[1][0] == '-' && argv[1][1] == 'v') {
		puts("phlo-dagster pause");
		return 0;
	}
	/* Block the stop signals outside sigsuspend, so one arriving between the check and the wait is not lost. */
	sigset_t block, wait_mask;
	sigemptyset(&block);
	sigaddset(&block, SIGTERM);
	sigaddset(&block, SIGINT);
	sigprocmask(SIG_BLOCK, &block, &wait_mask);
	struct sigaction sa = {0};
	sa.sa_handler = on_stop;
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	sa.sa_handler = on_child;
	sa.sa_flags = SA_NOCLDSTOP | SA_RESTART;
	sigaction(SIGCHLD, &sa, NULL);
	while (!stop) {
		sigsuspend(&wait_mask);
	}
	return 0;
}
