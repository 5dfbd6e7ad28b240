"""Admin-only compute pages, one module per area: jobs, registry (models, corpora, SAEs, training), dashboards."""
