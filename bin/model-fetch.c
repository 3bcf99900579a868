/* model-fetch: download a GPT-2 family model from the Hugging Face hub (or
 * a mirror) into the model cache, resumably and verified. The transfer
 * logic lives in lib/fetch.c. */
#include <getopt.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <curl/curl.h>

#include "fetch.h"

static SP_NORETURN void usage(FILE *f, int status)
{
    fprintf(f,
"Usage: model-fetch [OPTIONS] ID [FILE...]\n"
"Download FILEs of the Hugging Face repository ID (gpt2, distilgpt2,\n"
"gpt2-medium, OWNER/NAME) into $SAEPIPE_HOME/models/ID, resuming cut\n"
"transfers, checking size and SHA-256 as the hub reports them, renaming each\n"
"file into place only when whole. Files already there are not fetched again.\n"
"Prints the directory on stdout. Default FILEs: config.json model.safetensors\n"
"vocab.json merges.txt. When the repository has no model.safetensors (a 404),\n"
"its sharded checkpoint is fetched instead: model.safetensors.index.json and\n"
"every shard file its weight_map names.\n"
"\n"
"Options:\n"
"  -d, --dir DIR         put the files in DIR [Default: $SAEPIPE_HOME/models/ID;\n"
"                        SAEPIPE_HOME defaults to $XDG_CACHE_HOME/saepipe, then\n"
"                        ~/.cache/saepipe]\n"
"      --endpoint URL    the hub or a mirror [Default: $HF_ENDPOINT, else\n"
"                        " FETCH_DEFAULT_ENDPOINT "]\n"
"      --revision REV    branch, tag or commit [Default: main]\n"
"      --retries N       resume a cut transfer up to N times [Default: 5]\n"
"  -q, --quiet           do not print the directory\n"
"      --progress        show progress on stderr (also when stderr is a terminal)\n"
"  -h, --help            this help\n"
"  -V, --version         version\n"
"\n"
"HF_TOKEN, when set, is sent as a bearer token (for gated or private\n"
"repositories); it is never printed.\n"
"Exit status: 0 on success, 1 on a failed download, 2 on bad usage.\n");
    exit(status);
}

typedef struct {
    SpProgress p;
    int force;
    char file[256];
} Prog;

static void on_progress(void *user, const char *file, uint64_t done, uint64_t total)
{
    Prog *pr = user;
    if (strcmp(pr->file, file)) {
        if (*pr->file) sp_progress_end(&pr->p);
        snprintf(pr->file, sizeof pr->file, "%s", file);
        sp_progress_init(&pr->p, pr->force, pr->file, "B", total);
    }
    pr->p.total = total;
    sp_progress_update(&pr->p, done);
}

int main(int argc, char **argv)
{
    sp_set_prog(argv[0]);
    enum { O_ENDPOINT = 256, O_REVISION, O_RETRIES, O_PROGRESS };
    static const struct option longs[] = {
        {"dir", required_argument, 0, 'd'}, {"endpoint", required_argument, 0, O_ENDPOINT},
        {"revision", required_argument, 0, O_REVISION}, {"retries", required_argument, 0, O_RETRIES},
        {"quiet", no_argument, 0, 'q'}, {"progress", no_argument, 0, O_PROGRESS},
        {"help", no_argument, 0, 'h'}, {"version", no_argument, 0, 'V'}, {0, 0, 0, 0},
    };
    FetchOpts o;
    fetch_opts_default(&o);
    const char *dir_opt = NULL;
    int quiet = 0, c;
    Prog pr = {.force = 0};
    while ((c = getopt_long(argc, argv, "d:qhV", longs, NULL)) != -1) {
        switch (c) {
        case 'd': dir_opt = optarg; break;
        case O_ENDPOINT: o.endpoint = optarg; break;
        case O_REVISION: o.revision = optarg; break;
        case O_RETRIES: o.retries = (int)sp_opt_long("--retries", optarg, 0, 1000); break;
        case 'q': quiet = 1; break;
        case O_PROGRESS: pr.force = 1; break;
        case 'h': usage(stdout, 0);
        case 'V': sp_print_version();
        default: sp_usage_try();   // getopt said what was wrong
        }
    }
    if (optind >= argc) sp_usage_die("a repository ID is required");
    const char *id = argv[optind++];
    if (!fetch_valid_id(id)) sp_usage_die("'%s' is not a repository id (NAME or OWNER/NAME)", id);
    if (strncmp(o.endpoint, "http://", 7) && strncmp(o.endpoint, "https://", 8))
        sp_usage_die("--endpoint: expected an http:// or https:// URL, got '%s'", o.endpoint);
    if (!*o.revision || strchr(o.revision, '/') || strstr(o.revision, ".."))
        sp_usage_die("--revision: '%s' is not a branch, tag or commit", o.revision);
    static const char *defaults[] = {"config.json", "model.safetensors", "vocab.json", "merges.txt"};
    const char **files = (const char **)argv + optind;
    int nfiles = argc - optind;
    if (!nfiles) {
        files = defaults;
        nfiles = 4;
    }
    char dir[4096], err[1024];
    if (dir_opt) {
        snprintf(dir, sizeof dir, "%s", dir_opt);
    } else {
        char root[4000];
        if (fetch_cache_root(root, sizeof root, err, sizeof err) < 0) sp_die("%s", err);
        snprintf(dir, sizeof dir, "%s/%s", root, id);
    }
    o.progress = on_progress;
    o.user = &pr;
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != 0) sp_die("cannot initialise libcurl");
    int fetched = 0, total = 0;
    for (int i = 0; i < nfiles; i++) {
        int n = 1, rc = strcmp(files[i], "model.safetensors")
                            ? fetch_file(&o, id, files[i], dir, err, sizeof err)
                            : fetch_checkpoint(&o, id, dir, &n, err, sizeof err);
        if (*pr.file) sp_progress_end(&pr.p);
        pr.file[0] = 0;
        if (rc < 0) sp_die("%s: %s", id, err);
        fetched += rc;
        total += n;
    }
    curl_global_cleanup();
    if (pr.force) fprintf(stderr, "model-fetch: %s: %d file(s) fetched, %d already there\n", id, fetched, total - fetched);
    if (!quiet && printf("%s\n", dir) < 0) sp_die("stdout: write error");
    if (fflush(stdout) != 0 || fclose(stdout) != 0) sp_die("stdout: write error");
    return 0;
}
