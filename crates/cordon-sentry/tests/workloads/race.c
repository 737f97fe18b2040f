/* TOCTOU probe: one thread flips a path buffer between an allowed file and a path the sentry
 * hides (/proc/iomem) while the main thread opens it in a loop. Every fd that opens must be
 * the allowed file. Prints "race ok <opened> <refused>" or "RACE LOST" and exits 1. */
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static char path[64];
static atomic_int stop;

static void *flipper(void *arg) {
    (void)arg;
    /* Both states last a few microseconds, about as long as one supervised open. */
    while (!atomic_load(&stop)) {
        memcpy(path, "/proc/iomem", 12);
        __asm__ volatile("" ::: "memory"); /* keep both stores */
        for (volatile int i = 0; i < 2000; i++) {}
        memcpy(path, "/tmp/allowed", 13);
        __asm__ volatile("" ::: "memory");
        for (volatile int i = 0; i < 2000; i++) {}
    }
    return NULL;
}

int main(void) {
    int fd = open("/tmp/allowed", O_CREAT | O_WRONLY, 0644);
    if (fd < 0 || write(fd, "fine\n", 5) != 5) return 2;
    close(fd);
    struct stat ok;
    stat("/tmp/allowed", &ok);
    memcpy(path, "/tmp/allowed", 13);
    pthread_t t;
    pthread_create(&t, NULL, flipper, NULL);
    long opened = 0, refused = 0;
    for (int i = 0; i < 20000; i++) {
        int f = open(path, O_RDONLY);
        if (f < 0) { refused++; continue; }
        struct stat st;
        fstat(f, &st);
        if (st.st_ino != ok.st_ino || st.st_dev != ok.st_dev) {
            printf("RACE LOST: opened another file (ino %lu)\n", (unsigned long)st.st_ino);
            return 1;
        }
        opened++;
        close(f);
    }
    atomic_store(&stop, 1);
    pthread_join(t, NULL);
    printf("race ok %ld %ld\n", opened, refused);
    return 0;
}
