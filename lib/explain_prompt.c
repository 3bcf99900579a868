/* explain_prompt.c: prompt templates (load, parse, render) and the
 * messages as one completions prompt (see explain.h). */
#include <ctype.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "explain.h"
#include "explain_int.h"

int explain_prompt_parse(ExplainPrompt *p, const char *text, const char *name, char *err, size_t errlen)
{
    memset(p, 0, sizeof *p);
    p->path = xstrdup(name);
    Sb cur = {0};
    int line_no = 0;
    for (const char *s = text; *s;) {
        const char *e = strchr(s, '\n');
        size_t len = e ? (size_t)(e - s) : strlen(s);
        line_no++;
        if (len >= 4 && !strncmp(s, "=== ", 4)) {
            char role[32];
            snprintf(role, sizeof role, "%.*s", (int)(len - 4 < 31 ? len - 4 : 31), s + 4);
            while (*role && isspace((unsigned char)role[strlen(role) - 1])) role[strlen(role) - 1] = 0;
            if (strcmp(role, "system") && strcmp(role, "user") && strcmp(role, "assistant")) {
                snprintf(err, errlen, "%s: line %d: unknown role '%s' (system, user or assistant)", name, line_no, role);
                goto fail;
            }
            if (p->n == EXPLAIN_MAX_MSGS) {
                snprintf(err, errlen, "%s: more than %d messages", name, EXPLAIN_MAX_MSGS);
                goto fail;
            }
            if (p->n) p->text[p->n - 1] = sb_done(&cur);
            cur = (Sb){0};
            p->role[p->n++] = xstrdup(role);
        } else if (p->n) {
            sb_add(&cur, s, len);
            sb_str(&cur, "\n");
        } else if (len && s[0] != '#' && strspn(s, " \t\r") < len) {
            snprintf(err, errlen, "%s: line %d: text before the first '=== ROLE' line", name, line_no);
            goto fail;
        }
        s += len + (e != NULL);
    }
    if (!p->n) {
        snprintf(err, errlen, "%s: no messages (expected '=== system', '=== user' lines)", name);
        goto fail;
    }
    p->text[p->n - 1] = sb_done(&cur);
    /* trim the blank lines that separate messages */
    for (size_t i = 0; i < p->n; i++) {
        char *t = p->text[i];
        size_t l = strlen(t);
        while (l && (t[l - 1] == '\n' || t[l - 1] == ' ')) t[--l] = 0;
    }
    return 0;
fail:
    free(cur.s);
    explain_prompt_free(p);
    return -1;
}

int explain_prompt_load(ExplainPrompt *p, const char *path, char *err, size_t errlen)
{
    memset(p, 0, sizeof *p);
    size_t len;
    char *text = sp_read_file(path, &len);
    if (!text) {
        snprintf(err, errlen, "%s: cannot read prompt file: %s", path, strerror(errno));
        return -1;
    }
    if (strlen(text) != len) {
        snprintf(err, errlen, "%s: prompt file contains a NUL byte", path);
        free(text);
        return -1;
    }
    int rc = explain_prompt_parse(p, text, path, err, errlen);
    free(text);
    return rc;
}

void explain_prompt_free(ExplainPrompt *p)
{
    for (size_t i = 0; i < p->n; i++) {
        free(p->role[i]);
        free(p->text[i]);
    }
    free(p->path);
    memset(p, 0, sizeof *p);
}

json_t *explain_prompt_render(const ExplainPrompt *p, const char *examples, const char *explanation,
                              const char *n)
{
    static const char *names[] = {"{{EXAMPLES}}", "{{EXPLANATION}}", "{{N}}"};
    const char *vals[] = {examples, explanation, n};
    json_t *msgs = json_array();
    for (size_t i = 0; i < p->n; i++) {
        Sb b = {0};
        const char *s = p->text[i];
        while (*s) {
            size_t v = 0;
            while (v < 3 && (!vals[v] || strncmp(s, names[v], strlen(names[v])))) v++;
            if (v < 3) {
                sb_str(&b, vals[v]);
                s += strlen(names[v]);
            } else {
                sb_add(&b, s++, 1);
            }
        }
        char *t = sb_done(&b);
        json_array_append_new(msgs, json_pack("{s:s, s:s}", "role", p->role[i], "content", t));
        free(t);
    }
    return msgs;
}

char *explain_messages_text(const json_t *msgs)
{
    Sb b = {0};
    size_t i;
    json_t *m;
    json_array_foreach(msgs, i, m) {
        const char *role = json_string_value(json_object_get(m, "role"));
        const char *text = json_string_value(json_object_get(m, "content"));
        if (!role || !text) continue;
        if (!strcmp(role, "user")) sb_str(&b, "User:\n");
        else if (!strcmp(role, "assistant")) sb_str(&b, "Assistant:\n");
        sb_str(&b, text);
        sb_str(&b, "\n\n");
    }
    sb_str(&b, "Assistant:\n");
    return sb_done(&b);
}
