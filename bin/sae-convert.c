/* sae-convert: SAE files to and from the SAELens layout (cfg.json +
 * sae_weights.safetensors), so our dictionaries open in SAELens, sae_vis and
 * Neuronpedia, and published SAELens dictionaries run through our stages. */
#include <getopt.h>
#include <stdlib.h>
#include <string.h>

#include "sae_convert.h"
#include "stream.h"

static SP_NORETURN void usage(FILE *f, int status)
{
    fprintf(f,
"Usage: sae-convert to-saelens [OPTIONS] [SAE.tsz | -] -o DIR\n"
"       sae-convert from-saelens [OPTIONS] DIR > SAE.tsz\n"
"Convert an SAE file to a SAELens directory (cfg.json + sae_weights.safetensors)\n"
"or back.\n"
"\n"
"Commands:\n"
"  to-saelens      write DIR/cfg.json and DIR/sae_weights.safetensors (f32);\n"
"                  relu -> standard, topk -> standard + activation_fn_str topk,\n"
"                  jumprelu, batchtopk, matryoshka -> jumprelu with the\n"
"                  threshold, gated -> gated with b_gate, r_mag, b_mag;\n"
"                  norm_scale folded into the weights (arch, k, groups and\n"
"                  norm_scale kept in cfg.json \"saepipe\")\n"
"  from-saelens    read a SAELens directory (standard relu, topk, jumprelu,\n"
"                  batchtopk, matryoshka_batchtopk, gated; F32, F16 or BF16\n"
"                  weights) into an SAE file\n"
"\n"
"Options:\n"
"  -o, --output PATH   to-saelens: the directory (required); from-saelens: the\n"
"                      SAE file, written atomically [Default: stdout]\n"
"  -f, --force         write a binary stream even to a terminal\n"
"      --progress      accepted for uniformity (conversion is one step)\n"
"  -h, --help          this help\n"
"  -V, --version       version\n"
"\n"
"Exit status: 0 on success, 1 on a bad input, 2 on bad usage.\n");
    exit(status);
}

int main(int argc, char **argv)
{
    sp_set_prog(argv[0]);
    enum { O_PROGRESS = 256 };
    static const struct option longs[] = {
        {"output", required_argument, 0, 'o'}, {"force", no_argument, 0, 'f'},
        {"progress", no_argument, 0, O_PROGRESS}, {"help", no_argument, 0, 'h'},
        {"version", no_argument, 0, 'V'}, {0, 0, 0, 0},
    };
    const char *out = NULL;
    int force = 0, c;
    while ((c = getopt_long(argc, argv, "o:fhV", longs, NULL)) != -1) {
        switch (c) {
        case 'o': out = optarg; break;
        case 'f': force = 1; break;
        case O_PROGRESS: break;
        case 'h': usage(stdout, 0);
        case 'V': sp_print_version();
        default: sp_usage_try();   // getopt said what was wrong
        }
    }
    if (optind >= argc) sp_usage_die("missing command: to-saelens or from-saelens");
    const char *cmd = argv[optind++];
    const char *in = optind < argc ? argv[optind++] : NULL;
    if (optind < argc) sp_usage_die("unexpected argument '%s'", argv[optind]);
    SAE s;
    char err[1024];
    if (!strcmp(cmd, "to-saelens")) {
        if (!out) sp_usage_die("to-saelens needs -o DIR");
        if (!in) in = "-";
        if (sae_load(&s, in, err, sizeof err) < 0) sp_die("%s", err);
        if (sae_export_saelens(&s, out, err, sizeof err) < 0) sp_die("%s", err);
    } else if (!strcmp(cmd, "from-saelens")) {
        if (!in) sp_usage_die("from-saelens needs a directory");
        if (!out) out = "-";
        if (!strcmp(out, "-")) sp_check_binary_stdout(force);
        if (sae_import_saelens(&s, in, err, sizeof err) < 0) sp_die("%s", err);
        json_t *extra = json_pack("{s:s}", "imported_from", in);
        if (sae_save_as(&s, out, extra, "sae-convert", argc, argv, err, sizeof err) < 0) sp_die("%s", err);
        json_decref(extra);
    } else {
        sp_usage_die("unknown command '%s' (want to-saelens or from-saelens)", cmd);
    }
    sae_free(&s);
    return 0;
}
