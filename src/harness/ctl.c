/*
 * ctl.c: `cynic-harness ctl`, the command line client, covering Toxiproxy
 * CLI's commands: list, inspect, create, toggle, delete, toxic add | update |
 * remove. It talks to the API with a blocking HTTP/1.1 client (one request
 * per connection, bounded in time and size).
 */
#include <errno.h>
#include <math.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <jansson.h>
#include <llhttp.h>

#include "addr.h"
#include "buf.h"
#include "harness.h"
#include "json.h"

#define CTL_TIMEOUT_S 10
#define CTL_RESPONSE_MAX (64u << 20)

typedef struct response {
  int status;
  cynic__buf_t body;
  bool done;
} response_t;

static int on_body(llhttp_t *p, const char *at, size_t n) {
  response_t *r = p->data;
  return cynic__buf_append(&r->body, at, n) == 0 ? 0 : -1;
}

static int on_complete(llhttp_t *p) {
  response_t *r = p->data;
  r->status = p->status_code;
  r->done = true;
  return 0;
}

/* One request; 0 with *resp filled, or -1 with a message on stderr. */
static int request(const char *host, const char *port, const char *method, const char *path,
                   const char *body, response_t *resp) {
  struct addrinfo hints, *res = NULL;
  memset(&hints, 0, sizeof(hints));
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  int rc = getaddrinfo(host, port, &hints, &res);
  if (rc != 0) {
    fprintf(stderr, "ctl: %s: %s\n", host, gai_strerror(rc));
    return -1;
  }
  int fd = -1;
  for (struct addrinfo *a = res; a != NULL && fd < 0; a = a->ai_next) {
    fd = socket(a->ai_family, a->ai_socktype, a->ai_protocol);
    if (fd < 0)
      continue;
    struct timeval tv = {CTL_TIMEOUT_S, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    if (connect(fd, a->ai_addr, a->ai_addrlen) != 0) {
      close(fd);
      fd = -1;
    }
  }
  freeaddrinfo(res);
  if (fd < 0) {
    fprintf(stderr, "ctl: cannot connect to %s:%s: %s\n", host, port, strerror(errno));
    return -1;
  }
  cynic__buf_t req;
  cynic__buf_init(&req, CTL_RESPONSE_MAX);
  size_t blen = body ? strlen(body) : 0;
  cynic__buf_printf(&req,
                    "%s %s HTTP/1.1\r\nHost: %s:%s\r\nUser-Agent: cynic-harness-ctl\r\n"
                    "Connection: close\r\nContent-Length: %zu\r\n%s\r\n",
                    method, path, host, port, blen,
                    body ? "Content-Type: application/json\r\n" : "");
  if (body)
    cynic__buf_append(&req, body, blen);
  size_t off = 0;
  while (off < req.len) {
    ssize_t n = send(fd, req.data + off, req.len - off, MSG_NOSIGNAL);
    if (n <= 0) {
      fprintf(stderr, "ctl: send: %s\n", strerror(errno));
      cynic__buf_free(&req);
      close(fd);
      return -1;
    }
    off += (size_t)n;
  }
  cynic__buf_free(&req);

  llhttp_settings_t settings;
  llhttp_settings_init(&settings);
  settings.on_body = on_body;
  settings.on_message_complete = on_complete;
  llhttp_t parser;
  llhttp_init(&parser, HTTP_RESPONSE, &settings);
  parser.data = resp;
  char buf[65536];
  int result = 0;
  while (!resp->done) {
    ssize_t n = recv(fd, buf, sizeof(buf), 0);
    if (n < 0) {
      fprintf(stderr, "ctl: receive: %s\n", strerror(errno));
      result = -1;
      break;
    }
    if (n == 0) {
      llhttp_finish(&parser);
      if (!resp->done) {
        fprintf(stderr, "ctl: connection closed before the response ended\n");
        result = -1;
      }
      break;
    }
    if (llhttp_execute(&parser, buf, (size_t)n) != HPE_OK && !resp->done) {
      fprintf(stderr, "ctl: bad response: %s\n", llhttp_get_error_reason(&parser));
      result = -1;
      break;
    }
  }
  close(fd);
  return result;
}

typedef struct ctl {
  char host[CYNIC_ADDR_HOST_MAX];
  char port[8];
} ctl_t;

static int parse_url(const char *url, ctl_t *c) {
  const char *p = url;
  if (strncmp(p, "http://", 7) == 0)
    p += 7;
  char hp[CYNIC_ADDR_STR_MAX];
  size_t n = strcspn(p, "/");
  if (n >= sizeof(hp))
    return -1;
  memcpy(hp, p, n);
  hp[n] = '\0';
  uint16_t port = 8474;
  if (strchr(hp, ':') == NULL || (hp[0] == '[' && strstr(hp, "]:") == NULL)) {
    size_t l = strlen(hp);
    if (hp[0] == '[') { /* [v6] without a port */
      if (l < 3 || hp[l - 1] != ']')
        return -1;
      memmove(hp, hp + 1, l);
      hp[l - 2] = '\0';
      l -= 2;
    }
    if (l >= sizeof(c->host))
      return -1;
    memcpy(c->host, hp, l + 1);
  } else if (cynic__addr_split(hp, c->host, sizeof(c->host), &port) != 0) {
    return -1;
  }
  snprintf(c->port, sizeof(c->port), "%u", (unsigned)port);
  return 0;
}

/* Send and check; prints the API's error. Returns the parsed JSON (or a JSON
 * true for empty bodies) or NULL. */
static json_t *call(const ctl_t *c, const char *method, const char *path, json_t *body, int want) {
  char *text = body ? json_dumps(body, JSON_COMPACT) : NULL;
  json_decref(body);
  response_t r = {0};
  cynic__buf_init(&r.body, CTL_RESPONSE_MAX);
  int rc = request(c->host, c->port, method, path, text, &r);
  free(text);
  json_t *out = NULL;
  if (rc == 0) {
    json_t *js = r.body.len ? json_loadb(r.body.data, r.body.len, 0, NULL) : json_true();
    if (r.status != want) {
      const char *msg = js ? json_string_value(json_object_get(js, "error")) : NULL;
      fprintf(stderr, "ctl: %s %s: %d: %s\n", method, path, r.status,
              msg ? msg : (r.body.data ? r.body.data : ""));
      json_decref(js);
    } else {
      out = js;
    }
  }
  cynic__buf_free(&r.body);
  return out;
}

/* GET /events and print the JSON lines as they are. */
static int cmd_events(const ctl_t *c, int argc, char **argv) {
  char path[512] = "/events?limit=10000";
  size_t len = strlen(path);
  for (int i = 0; i + 1 < argc; i += 2) {
    const char *key = NULL;
    if (strcmp(argv[i], "-since") == 0 || strcmp(argv[i], "--since") == 0)
      key = "since";
    else if (strcmp(argv[i], "-proxy") == 0 || strcmp(argv[i], "--proxy") == 0)
      key = "proxy";
    if (key == NULL || strlen(argv[i + 1]) > HARNESS_NAME_MAX) {
      fprintf(stderr, "ctl: events takes -since ID and -proxy NAME\n");
      return 2;
    }
    int n = snprintf(path + len, sizeof(path) - len, "&%s=%s", key, argv[i + 1]);
    if (n < 0 || (size_t)n >= sizeof(path) - len)
      return 2;
    len += (size_t)n;
  }
  if (argc % 2 != 0) {
    fprintf(stderr, "ctl: events takes -since ID and -proxy NAME\n");
    return 2;
  }
  response_t r = {0};
  cynic__buf_init(&r.body, CTL_RESPONSE_MAX);
  int rc = request(c->host, c->port, "GET", path, NULL, &r);
  if (rc == 0 && r.status == 200) {
    fwrite(r.body.data ? r.body.data : "", 1, r.body.len, stdout);
  } else if (rc == 0) {
    fprintf(stderr, "ctl: GET %s: %d: %s\n", path, r.status, r.body.data ? r.body.data : "");
    rc = 1;
  } else {
    rc = 1;
  }
  cynic__buf_free(&r.body);
  return rc;
}

static void usage(FILE *f) {
  fprintf(f, "usage: cynic-harness ctl [-host URL] COMMAND\n"
             "  list                                  proxies and their toxics\n"
             "  inspect NAME                          one proxy, its toxics and attributes\n"
             "  create NAME -l LISTEN -u UPSTREAM     a new proxy\n"
             "  toggle NAME                           enable <-> disable\n"
             "  delete NAME                           remove a proxy\n"
             "  toxic add NAME -t TYPE [-n TOXIC] [-s upstream|downstream] [-u] [-d]\n"
             "            [-tox TOXICITY] [-a KEY=VALUE ...]\n"
             "  toxic update NAME -n TOXIC [-tox TOXICITY] [-a KEY=VALUE ...]\n"
             "  toxic remove NAME -n TOXIC\n"
             "  events [-since ID] [-proxy NAME]      the event log, as JSON lines\n"
             "  -host defaults to $TOXIPROXY_URL or http://localhost:8474\n");
}

static int cmd_list(const ctl_t *c) {
  json_t *all = call(c, "GET", "/proxies", NULL, 200);
  if (all == NULL)
    return 1;
  printf("%-24s %-24s %-24s %-8s %s\n", "NAME", "LISTEN", "UPSTREAM", "ENABLED", "TOXICS");
  const char *name;
  json_t *p;
  json_object_foreach(all, name, p) {
    printf("%-24s %-24s %-24s %-8s %zu\n", name, json_string_value(json_object_get(p, "listen")),
           json_string_value(json_object_get(p, "upstream")),
           json_is_true(json_object_get(p, "enabled")) ? "true" : "false",
           json_array_size(json_object_get(p, "toxics")));
  }
  json_decref(all);
  return 0;
}

static int print_json(json_t *v) {
  if (v == NULL)
    return 1;
  char *s = json_dumps(v, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
  if (s)
    printf("%s\n", s);
  free(s);
  json_decref(v);
  return 0;
}

/* "-a key=value": an integer when it reads as one, else a string. */
static int add_attr(json_t *attrs, const char *kv) {
  const char *eq = strchr(kv, '=');
  if (eq == NULL || eq == kv) {
    fprintf(stderr, "ctl: attribute must be KEY=VALUE: %s\n", kv);
    return -1;
  }
  char key[128];
  size_t n = (size_t)(eq - kv);
  if (n >= sizeof(key))
    return -1;
  memcpy(key, kv, n);
  key[n] = '\0';
  if (!cynic__utf8_valid(kv, strlen(kv))) {
    /* jansson would drop the key or the value without a word */
    fprintf(stderr, "ctl: attribute must be UTF-8 text: %s\n", key);
    return -1;
  }
  char *end;
  errno = 0;
  long long v = strtoll(eq + 1, &end, 10);
  if (eq[1] != '\0' && *end == '\0' && errno == 0)
    json_object_set_new(attrs, key, json_integer(v));
  else
    json_object_set_new(attrs, key, json_string(eq + 1));
  return 0;
}

static int cmd_toxic(const ctl_t *c, int argc, char **argv) {
  if (argc < 2) {
    usage(stderr);
    return 2;
  }
  const char *sub = argv[0], *proxy = argv[1];
  const char *type = NULL, *name = NULL, *stream = NULL, *tox = NULL;
  json_t *attrs = json_object();
  for (int i = 2; i < argc; i++) {
    const char *a = argv[i];
    const char *v = i + 1 < argc ? argv[i + 1] : NULL;
    if (strcmp(a, "-u") == 0 || strcmp(a, "--upstream") == 0)
      stream = "upstream";
    else if (strcmp(a, "-d") == 0 || strcmp(a, "--downstream") == 0)
      stream = "downstream";
    else if (v == NULL) {
      fprintf(stderr, "ctl: %s needs a value\n", a);
      json_decref(attrs);
      return 2;
    } else if (strcmp(a, "-t") == 0 || strcmp(a, "--type") == 0)
      type = argv[++i];
    else if (strcmp(a, "-n") == 0 || strcmp(a, "--toxicName") == 0)
      name = argv[++i];
    else if (strcmp(a, "-s") == 0 || strcmp(a, "--stream") == 0)
      stream = argv[++i];
    else if (strcmp(a, "-tox") == 0 || strcmp(a, "--toxicity") == 0)
      tox = argv[++i];
    else if (strcmp(a, "-a") == 0 || strcmp(a, "--attribute") == 0) {
      if (add_attr(attrs, argv[++i]) != 0) {
        json_decref(attrs);
        return 2;
      }
    } else {
      fprintf(stderr, "ctl: unknown option %s\n", a);
      json_decref(attrs);
      return 2;
    }
  }
  json_t *body = json_object();
  double toxicity = 1.0;
  if (tox != NULL) {
    char *end;
    toxicity = strtod(tox, &end);
    if (*end != '\0' || end == tox || !isfinite(toxicity)) {
      /* nan and inf are no JSON: json_real would fail and the field vanish */
      fprintf(stderr, "ctl: toxicity must be a number: %s\n", tox);
      json_decref(attrs);
      json_decref(body);
      return 2;
    }
    json_object_set_new(body, "toxicity", json_real(toxicity));
  }
  char path[1024];
  if (strcmp(sub, "add") == 0 || strcmp(sub, "a") == 0) {
    if (type == NULL) {
      fprintf(stderr, "ctl: toxic add needs -t TYPE\n");
      json_decref(attrs);
      json_decref(body);
      return 2;
    }
    json_object_set_new(body, "type", json_string(type));
    if (name)
      json_object_set_new(body, "name", json_string(name));
    if (stream)
      json_object_set_new(body, "stream", json_string(stream));
    json_object_set_new(body, "attributes", attrs);
    snprintf(path, sizeof(path), "/proxies/%s/toxics", proxy);
    return print_json(call(c, "POST", path, body, 200));
  }
  if (name == NULL) {
    fprintf(stderr, "ctl: toxic %s needs -n TOXIC\n", sub);
    json_decref(attrs);
    json_decref(body);
    return 2;
  }
  snprintf(path, sizeof(path), "/proxies/%s/toxics/%s", proxy, name);
  if (strcmp(sub, "update") == 0 || strcmp(sub, "u") == 0) {
    json_object_set_new(body, "attributes", attrs);
    return print_json(call(c, "POST", path, body, 200));
  }
  json_decref(attrs);
  json_decref(body);
  if (strcmp(sub, "remove") == 0 || strcmp(sub, "r") == 0 || strcmp(sub, "delete") == 0) {
    json_t *r = call(c, "DELETE", path, NULL, 204);
    if (r == NULL)
      return 1;
    json_decref(r);
    printf("Removed toxic %s on proxy %s\n", name, proxy);
    return 0;
  }
  usage(stderr);
  return 2;
}

int harness_ctl_main(int argc, char **argv);

int harness_ctl_main(int argc, char **argv) {
  ctl_t c;
  const char *url = getenv("TOXIPROXY_URL");
  if (url == NULL || url[0] == '\0')
    url = "http://localhost:8474";
  int i = 0;
  while (i < argc && argv[i][0] == '-') {
    if ((strcmp(argv[i], "-host") == 0 || strcmp(argv[i], "--host") == 0) && i + 1 < argc) {
      url = argv[i + 1];
      i += 2;
    } else if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0) {
      usage(stdout);
      return 0;
    } else {
      fprintf(stderr, "ctl: unknown flag %s\n", argv[i]);
      usage(stderr);
      return 2;
    }
  }
  if (parse_url(url, &c) != 0) {
    fprintf(stderr, "ctl: bad -host %s\n", url);
    return 2;
  }
  if (i >= argc) {
    usage(stderr);
    return 2;
  }
  const char *cmd = argv[i++];
  int left = argc - i;
  char **rest = argv + i;
  char path[1024];
  if (strcmp(cmd, "list") == 0 || strcmp(cmd, "l") == 0 || strcmp(cmd, "ls") == 0)
    return cmd_list(&c);
  if (strcmp(cmd, "toxic") == 0 || strcmp(cmd, "t") == 0)
    return cmd_toxic(&c, left, rest);
  if (strcmp(cmd, "events") == 0)
    return cmd_events(&c, left, rest);
  if (left < 1) {
    usage(stderr);
    return 2;
  }
  const char *name = rest[0];
  snprintf(path, sizeof(path), "/proxies/%s", name);
  if (strcmp(cmd, "inspect") == 0 || strcmp(cmd, "i") == 0)
    return print_json(call(&c, "GET", path, NULL, 200));
  if (strcmp(cmd, "delete") == 0 || strcmp(cmd, "d") == 0) {
    json_t *r = call(&c, "DELETE", path, NULL, 204);
    if (r == NULL)
      return 1;
    json_decref(r);
    printf("Deleted proxy %s\n", name);
    return 0;
  }
  if (strcmp(cmd, "toggle") == 0 || strcmp(cmd, "tog") == 0) {
    json_t *p = call(&c, "GET", path, NULL, 200);
    if (p == NULL)
      return 1;
    bool enabled = json_is_true(json_object_get(p, "enabled"));
    json_decref(p);
    json_t *r = call(&c, "POST", path, json_pack("{s:b}", "enabled", !enabled), 200);
    if (r == NULL)
      return 1;
    json_decref(r);
    printf("Proxy %s is now %s\n", name, enabled ? "disabled" : "enabled");
    return 0;
  }
  if (strcmp(cmd, "create") == 0 || strcmp(cmd, "c") == 0) {
    const char *listen = NULL, *upstream = NULL;
    for (int k = 1; k + 1 < left; k += 2) {
      if (strcmp(rest[k], "-l") == 0 || strcmp(rest[k], "--listen") == 0)
        listen = rest[k + 1];
      else if (strcmp(rest[k], "-u") == 0 || strcmp(rest[k], "--upstream") == 0)
        upstream = rest[k + 1];
    }
    if (listen == NULL || upstream == NULL) {
      fprintf(stderr, "ctl: create needs -l LISTEN and -u UPSTREAM\n");
      return 2;
    }
    json_t *r =
        call(&c, "POST", "/proxies",
             json_pack("{s:s,s:s,s:s}", "name", name, "listen", listen, "upstream", upstream), 201);
    if (r == NULL)
      return 1;
    printf("Created new proxy %s listening on %s\n", name,
           json_string_value(json_object_get(r, "listen")));
    json_decref(r);
    return 0;
  }
  fprintf(stderr, "ctl: unknown command %s\n", cmd);
  usage(stderr);
  return 2;
}
