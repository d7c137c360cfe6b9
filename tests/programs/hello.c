/* A small program for "runs as it would without uvmtrace" tests: asks sysinfo() (a shim hook),
 * prints numbered lines to stdout and stderr (optionally slowly), exits with the code given. */
#include <stdio.h>
#include <stdlib.h>
#include <sys/sysinfo.h>
#include <unistd.h>

int main(int argc, char **argv)
{
    int code = argc > 1 ? atoi(argv[1]) : 0;
    int lines = argc > 2 ? atoi(argv[2]) : 3;
    int pause_ms = argc > 3 ? atoi(argv[3]) : 0;
    struct sysinfo si;
    if (sysinfo(&si) != 0)
        return 99;
    for (int i = 0; i < lines; i++) {
        printf("out %d\n", i);
        fflush(stdout);
        fprintf(stderr, "err %d\n", i);
        if (pause_ms)
            usleep((useconds_t)pause_ms * 1000);
    }
    return code;
}
