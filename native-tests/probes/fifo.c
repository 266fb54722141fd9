/* fifo DIR: mkfifo, stat type, non-blocking opens, data through the fifo, unix socket node. */
#include "common.h"
#include <sys/socket.h>
#include <sys/un.h>

int main(int argc, char **argv)
{
    probe_init(argc, argv, 2, "DIR");
    OK(mkfifoat(DIRFD, "p", 0640));
    struct stat st = lst("p");
    TRUE(S_ISFIFO(st.st_mode), "p is not a fifo (mode %o)", st.st_mode);
    EQ(st.st_mode & 07777, 0640, "fifo mode");
    ERR(openat(DIRFD, "p", O_WRONLY | O_NONBLOCK), ENXIO); /* no reader yet */
    int r = OK(openat(DIRFD, "p", O_RDONLY | O_NONBLOCK));
    int w = OK(openat(DIRFD, "p", O_WRONLY | O_NONBLOCK));
    char b[8] = {0};
    ERR(read(r, b, sizeof b), EAGAIN);
    EQ(OK(write(w, "ping", 4)), 4, "write to fifo");
    EQ(OK(read(r, b, sizeof b)), 4, "read from fifo");
    TRUE(!memcmp(b, "ping", 4), "fifo delivered '%s'", b);
    OK(close(w));
    EQ(OK(read(r, b, sizeof b)), 0, "read after writer closed (EOF)");
    OK(close(r));
    EQ(lst("p").st_size, 0, "fifo size");
    ERR(mkfifoat(DIRFD, "p", 0640), EEXIST);

    /* a unix socket bound inside the directory appears as a socket node */
    char path[sizeof(((struct sockaddr_un *)0)->sun_path)];
    int n = snprintf(path, sizeof path, "%s/sock", argv[1]);
    if (n < (int)sizeof path) {
        int s = OK(socket(AF_UNIX, SOCK_STREAM, 0));
        struct sockaddr_un sa = {.sun_family = AF_UNIX};
        memcpy(sa.sun_path, path, n + 1);
        OK(bind(s, (struct sockaddr *)&sa, sizeof sa));
        OK(listen(s, 1));
        TRUE(S_ISSOCK(lst("sock").st_mode), "sock is not a socket (mode %o)", lst("sock").st_mode);
        int c = OK(socket(AF_UNIX, SOCK_STREAM, 0));
        OK(connect(c, (struct sockaddr *)&sa, sizeof sa));
        close(c);
        close(s);
        OK(unlinkat(DIRFD, "sock", 0));
    }
    return 0;
}
