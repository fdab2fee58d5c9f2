DROP TABLE template_versions;
DROP TABLE templates;
