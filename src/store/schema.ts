/**
 * The SQL schema files (sql/mysql/schema.sql, sql/sqlite/schema.sql) and the
 * low-level helpers that apply or check them. This is the only store module
 * that reads files, and only those two.
 */
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import type Database from 'better-sqlite3';
import { StoreError } from './types.js';

/** Table versions sipd expects (Kamailio 5.x). */
export const EXPECTED_VERSIONS: Readonly<Record<string, number>> = { subscriber: 7, location: 9 };

/** Absolute path of sql/<kind>/schema.sql in this package (from src/store or dist/store). */
export function schemaPath(kind: 'mysql' | 'sqlite'): string {
  return fileURLToPath(new URL(`../../sql/${kind}/schema.sql`, import.meta.url));
}

export function readSchema(kind: 'mysql' | 'sqlite'): string {
  const p = schemaPath(kind);
  try {
    return readFileSync(p, 'utf8');
  } catch (e) {
    const err = e as NodeJS.ErrnoException;
    throw new StoreError('SCHEMA', `cannot read schema file ${p}: ${err.code ?? err.message}`, { cause: e });
  }
}

/** Split a schema file into statements: drop `--` comment lines, split on ';' at end of line. */
export function splitStatements(sql: string): string[] {
  return sql
    .split('\n')
    .filter((l) => !/^\s*--/.test(l))
    .join('\n')
    .split(/;\s*(?:\n|$)/)
    .map((s) => s.trim())
    .filter((s) => s.length > 0);
}

export function sqliteSchemaPresent(db: Database.Database): boolean {
  const row = db
    .prepare<[], { n: number }>(
      `SELECT count(*) AS n FROM sqlite_master WHERE type = 'table' AND name IN ('version', 'subscriber', 'location')`,
    )
    .get();
  return (row?.n ?? 0) === 3;
}

export function applySqliteSchema(db: Database.Database): void {
  db.exec(readSchema('sqlite'));
}

/** Check version rows against EXPECTED_VERSIONS; throws StoreError SCHEMA with a one-line hint. */
export function checkVersions(rows: { table_name: string; table_version: number }[], where: string): void {
  const found = new Map(rows.map((r) => [r.table_name, Number(r.table_version)]));
  for (const [table, version] of Object.entries(EXPECTED_VERSIONS)) {
    const v = found.get(table);
    if (v === undefined) throw new StoreError('SCHEMA', `${where}: table ${table} is not initialised (run: sipctl db init)`);
    if (v !== version) throw new StoreError('SCHEMA', `${where}: table ${table} has version ${v}, sipd needs ${version} (Kamailio 5.x)`);
  }
}
