/* main.c - vggtune, the client of vggtuned: wires the process (standard
 * streams, the terminal, Ctrl-C, window size) to the command logic in
 * cli.h.
 */
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "cli.h"

static vt_cli vt__cli;

static int vt__term_width(void)
{
    struct winsize ws;
    return ioctl(STDOUT_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_col > 0 ? ws.ws_col : 0;
}

/* Ctrl-C while watching stops the watch politely (the job goes on); at any
 * other time it does what it always does. */
static void vt__on_sigint(int sig)
{
    if (!vt__cli.watching) {
        signal(sig, SIG_DFL);
        raise(sig);
        return;
    }
    vt__cli.interrupted = 1;
}

static void vt__on_sigwinch(int sig)
{
    (void)sig;
    vt__cli.width = vt__term_width();
}

int main(int argc, char **argv)
{
    struct sigaction sa;
    char cwd[PATH_MAX];

    if (!getcwd(cwd, sizeof cwd)) {
        perror("vggtune: the current directory");
        return 1;
    }
    vt__cli.out = stdout;
    vt__cli.err = stderr;
    vt__cli.tty = isatty(STDOUT_FILENO);
    vt__cli.width = vt__cli.tty ? vt__term_width() : 0;
    vt__cli.cwd = cwd;

    memset(&sa, 0, sizeof sa);
    sigemptyset(&sa.sa_mask);
    /* An ignored SIGINT (a background job, nohup) stays ignored. */
    if (sigaction(SIGINT, NULL, &sa) == 0 && sa.sa_handler != SIG_IGN) {
        memset(&sa, 0, sizeof sa);
        sigemptyset(&sa.sa_mask);
        sa.sa_handler = vt__on_sigint; /* no SA_RESTART: the watch's poll wakes up */
        sigaction(SIGINT, &sa, NULL);
    }
    sa.sa_handler = vt__on_sigwinch;
    sa.sa_flags = SA_RESTART;
    if (vt__cli.tty)
        sigaction(SIGWINCH, &sa, NULL);
    return vt_cli_main(&vt__cli, argc, argv);
}
