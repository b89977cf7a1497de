/* test_layering.c — the `layering` test: every #include "…" of the product's sources must name
 * an existing root-relative file of its own room or a room below it (cmake/rooms.txt), the
 * include graph has no circle, and no folder holds more than a third of the lines. */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

enum { MAX_FILES = 1024, MAX_ROOMS = 32, MAX_INC = 64 };

typedef struct {
    char path[200];
    int room, lines, n_inc;
    int inc[MAX_INC];
    char inc_name[MAX_INC][200];
} src_t;

static char rooms[MAX_ROOMS][64]; 
static int n_rooms;
static src_t files[MAX_FILES];
static int n_files, failures;

static int is_source(const char *name) {
    static const char *ext[] = {".c", ".h", ".cu", ".cuh", ".cc", ".inc"};
    const char *dot = strrchr(name, '.');
    for (size_t i = 0; dot && i < sizeof ext / sizeof ext[0]; i++)
        if (!strcmp(dot, ext[i]))
            return 1;
    return 0;
}

/* The deepest room whose folder holds path; −1 when none does. */
static int room_of(const char *path) {
    int best = -1;
    size_t best_len = 0;
    for (int r = 0; r < n_rooms; r++) {
        size_t n = strlen(rooms[r]);
        if (!strncmp(path, rooms[r], n) && path[n] == '/' && n > best_len)
            best = r, best_len = n;
    }
    return best;
}

static void scan_dir(const char *root, const char *rel) {
    char dir[2048];
    snprintf(dir, sizeof dir, "%.800s/%.1000s", root, rel);
    DIR *d = opendir(dir);
    if (!d)
        return;
    for (struct dirent *e; (e = readdir(d));) {
        if (e->d_name[0] == '.')
            continue;
        char sub[1024], full[2048];
        if ((size_t)snprintf(sub, sizeof sub, "%s/%s", rel, e->d_name) >= sizeof files[0].path)
            continue;
        snprintf(full, sizeof full, "%s/%s", root, sub);
        struct stat st;
        if (stat(full, &st))
            continue;
        if (S_ISDIR(st.st_mode)) {
            scan_dir(root, sub);
        } else if (is_source(e->d_name) && room_of(sub) >= 0) {
            if (n_files == MAX_FILES) {
                fprintf(stderr, "more than %d sources\n", MAX_FILES);
                exit(1);
            }
            src_t *f = &files[n_files++];
            memset(f, 0, sizeof *f);
            snprintf(f->path, sizeof f->path, "%.199s", sub);
            f->room = room_of(sub);
        }
    }
    closedir(d);
}

static int find_file(const char *path) {
    for (int i = 0; i < n_files; i++)
        if (!strcmp(files[i].path, path))
            return i;
    return -1;
}

static void read_includes(const char *root, src_t *f) {
    char full[1024], line[1024];
    snprintf(full, sizeof full, "%.800s/%.199s", root, f->path);
    FILE *in = fopen(full, "r");
    if (!in) {
        printf("FAIL %s: cannot read\n", f->path), failures++;
        return;
    }
    while (fgets(line, sizeof line, in)) {
        f->lines++;
        char *s = line, name[200];
        while (*s == ' ' || *s == '\t')
            s++;
        if (sscanf(s, "#%*[ \t]include \"%199[^\"]\"", name) != 1 && sscanf(s, "#include \"%199[^\"]\"", name) != 1)
            continue;
        if (!strcmp(name, "git_sha.h")) /* generated into the build tree */
            continue;
        int to = find_file(name);
        if (to < 0) {
            printf("FAIL %s: includes \"%s\", which is not a root-relative product source\n", f->path, name);
            failures++;
        } else {
            if (files[to].room < f->room) {
                printf("FAIL %s (room %s) includes %s of room %s, which is above it\n", f->path, rooms[f->room], name,
                       rooms[files[to].room]);
                failures++;
            }
            if (f->n_inc == MAX_INC) {
                printf("FAIL %s: more than %d includes\n", f->path, MAX_INC);
                failures++;
                continue;
            }
            snprintf(f->inc_name[f->n_inc], sizeof f->inc_name[0], "%s", name);
            f->inc[f->n_inc++] = to;
        }
    }
    fclose(in);
}

/* Depth-first search for a circle; state 1 = on the current path, 2 = done. */
static int state[MAX_FILES], path_stack[MAX_FILES], depth;
static void visit(int i) {
    state[i] = 1;
    path_stack[depth++] = i;
    for (int k = 0; k < files[i].n_inc; k++) {
        int j = files[i].inc[k];
        if (state[j] == 1) {
            printf("FAIL include circle:");
            int from = depth - 1;
            while (path_stack[from] != j)
                from--;
            for (int s = from; s < depth; s++)
                printf(" %s ->", files[path_stack[s]].path);
            printf(" %s\n", files[j].path);
            failures++;
        } else if (!state[j]) {
            visit(j);
        }
    }
    depth--;
    state[i] = 2;
}

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: test_layering SOURCE_ROOT\n");
        return 2;
    }
    const char *root = argv[1];
    char rooms_path[1024], line[256];
    snprintf(rooms_path, sizeof rooms_path, "%.900s/cmake/rooms.txt", root);
    FILE *rf = fopen(rooms_path, "r");
    if (!rf) {
        fprintf(stderr, "cannot read %s\n", rooms_path);
        return 1;
    }
    while (fgets(line, sizeof line, rf) && n_rooms < MAX_ROOMS) {
        line[strcspn(line, "\r\n")] = 0;
        if (line[0] && line[0] != '#')
            snprintf(rooms[n_rooms++], sizeof rooms[0], "%.63s", line);
    }
    fclose(rf);
    for (int r = 0; r < n_rooms; r++)
        if (!strchr(rooms[r], '/'))
            scan_dir(root, rooms[r]);
    for (int i = 0; i < n_files; i++)
        read_includes(root, &files[i]);
    for (int i = 0; i < n_files; i++)
        if (!state[i])
            visit(i);

    /* Lines per folder (the files directly in it) against the whole. */
    long total = 0;
    for (int i = 0; i < n_files; i++)
        total += files[i].lines;
    for (int i = 0; i < n_files; i++) {
        char dir[sizeof files[0].path];
        memcpy(dir, files[i].path, sizeof dir);
        *strrchr(dir, '/') = 0;
        int first = 1;
        long lines = 0;
        for (int j = 0; j < n_files && first; j++) {
            char dj[sizeof files[0].path];
            memcpy(dj, files[j].path, sizeof dj);
            *strrchr(dj, '/') = 0;
            if (!strcmp(dj, dir)) {
                if (j < i)
                    first = 0;
                lines += files[j].lines;
            }
        }
        if (!first)
            continue;
        printf("%-16s %6ld lines  %4.1f %%\n", dir, lines, 100.0 * lines / total);
        if (3 * lines > total) {
            printf("FAIL %s holds %ld of %ld lines (more than a third)\n", dir, lines, total);
            failures++;
        }
    }
    printf("%d sources in %d rooms, %ld lines: %d failure(s)\n", n_files, n_rooms, total, failures);
    return failures ? 1 : 0;
}
