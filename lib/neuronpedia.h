/* neuronpedia.h: a run (topk-ctx and explain-gpt4 output) in Neuronpedia's
 * feature JSON layout, for sae-export --neuronpedia.
 *
 * Layout (sources: SAEDashboard's sae_dashboard/neuronpedia/
 * neuronpedia_dashboard.py, the batch files its NeuronpediaRunner writes
 * for upload, and the Neuron, Activation and Explanation models of
 * neuronpedia's apps/webapp/prisma/schema.prisma; tests/data/neuronpedia/
 * holds them as JSON Schema):
 *   DIR/features/batch-N.json      {"model_id", "layer", "sae_set",
 *                                   "features": [feature...]}
 *   DIR/explanations/batch-N.json  [{"modelId", "layer": "L-SET", "index",
 *                                   "description", "typeName",
 *                                   "explanationModelName", "scoreV1"}...]
 *   DIR/manifest.json              the files and counts, written last: a
 *                                  directory without it is incomplete
 * Each file is written atomically. */
#ifndef SP_NEURONPEDIA_H
#define SP_NEURONPEDIA_H

#include <stddef.h>
#include <jansson.h>

#include "stream.h"

typedef struct {
    const char *model_id;   /* Neuronpedia's model id, e.g. "gpt2-small" */
    const char *sae_set;    /* the SAE set: the source is "LAYER-SET" */
    const char *dataset;    /* recorded as each feature's "dataset" */
    long layer;
    size_t batch;           /* features per file */
    size_t window;          /* topk-ctx's W: "n_tokens_in_prompt" */
    size_t bands;           /* topk-ctx's NB: each band holds 1/NB of the firing tokens */
    /* A token's text, or NULL for none; NULL tok: the records' token_strs. */
    const char *(*tok)(void *ud, int32_t id);
    void *tok_ud;
    size_t vocab;           /* tok's vocabulary size, logit ids below it; 0: unknown */
} NpOpts;

typedef struct {
    NpOpts o;
    char *dir;
    json_t *expl;           /* "feature id" -> explain-gpt4 record meta */
    json_t *feats, *expls;  /* the batch being filled */
    json_t *files;          /* for the manifest */
    size_t nbatch, nfeat, nexpl;
    char err[512];
} NpWriter;

/* Start a directory (made if absent; refused when it holds a manifest.json,
 * unless force). 0, or -1 with w->err. */
int np_open(NpWriter *w, const char *dir, const NpOpts *o, int force) SP_RESULT_USED;
/* Remember one explain-gpt4 record (kind "explanation"); those of features
 * never added are not written. 0, or -1 with w->err. */
int np_add_explanation(NpWriter *w, const TszRecord *rec) SP_RESULT_USED;
/* Add one topk-ctx record of kind "feature" (without o.tok it needs
 * token_strs: topk-ctx --model); writes a batch when full. 0, or -1 with
 * w->err. */
int np_add_feature(NpWriter *w, const TszRecord *rec) SP_RESULT_USED;
/* Write the last batch and the manifest. 0, or -1 with w->err. */
int np_close(NpWriter *w) SP_RESULT_USED;
void np_free(NpWriter *w);

#endif
