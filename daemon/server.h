/* server.h - the daemon proper: socket, job table, device thread. */
#ifndef VT_SERVER_H
#define VT_SERVER_H

/* Parses the daemon's options and serves until SIGTERM/SIGINT; returns the
 * exit status. */
int vt_server_main(int argc, char **argv);

#endif
