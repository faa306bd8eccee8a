/* <loom/loom.h> — the whole plugin SDK in one include. */
#ifndef LOOM_LOOM_H
#define LOOM_LOOM_H

#include <loom/version.h>
#include <loom/error.h>
#include <loom/types.h>
#include <loom/host.h>
#include <loom/plugin.h>
#include <loom/storage.h>
#include <loom/scheduler.h>
#include <loom/sampler.h>
#include <loom/head.h>
#include <loom/tracker.h>
#include <loom/exporter.h>
#include <loom/compute.h>
#include <loom/spec.h>
#include <loom/safetensors.h>
#include <loom/util.h>

#endif /* LOOM_LOOM_H */
