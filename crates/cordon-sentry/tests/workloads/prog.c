#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static void *worker(void *arg) {
    char path[64];
    snprintf(path, sizeof path, "/tmp/c%ld", (long)arg);
    FILE *f = fopen(path, "w");
    if (!f) return (void *)1;
    fprintf(f, "%ld\n", (long)arg);
    fclose(f);
    return NULL;
}

int main(void) {
    pthread_t t[4];
    for (long i = 0; i < 4; i++) pthread_create(&t[i], NULL, worker, (void *)i);
    for (int i = 0; i < 4; i++) {
        void *r;
        pthread_join(t[i], &r);
        if (r) { puts("thread failed"); return 1; }
    }
    struct stat st;
    if (stat("/tmp/c3", &st) != 0 || st.st_size != 2) { puts("stat failed"); return 1; }
    int fd = open("/etc/passwd", O_RDONLY);
    char buf[16];
    if (fd < 0 || read(fd, buf, sizeof buf) <= 0) { puts("open failed"); return 1; }
    close(fd);
    if (mkdir("/tmp/cdir", 0755) || rmdir("/tmp/cdir")) { puts("mkdir failed"); return 1; }
    puts("c ok");
    return 0;
}
