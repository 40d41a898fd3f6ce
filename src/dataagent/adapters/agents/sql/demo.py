"""The demo sample database: a small SQLite file of customers, products and orders, generated from a seed."""

from __future__ import annotations

import os
import random
import sqlite3
from contextlib import closing
from datetime import date, timedelta

DEMO_SEED = 20240601
DEMO_ROW_COUNTS: dict[str, int] = {"customers": 50, "products": 20, "orders": 300}
ORDER_STATUSES: tuple[str, ...] = ("completed", "completed", "completed", "shipped", "pending", "cancelled")

_SCHEMA = """
CREATE TABLE customers (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL,
    city TEXT NOT NULL,
    country TEXT NOT NULL,
    signup_date DATE NOT NULL
);
CREATE TABLE products (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL,
    category TEXT NOT NULL,
    price REAL NOT NULL
);
CREATE TABLE orders (
    id INTEGER PRIMARY KEY,
    customer_id INTEGER NOT NULL REFERENCES customers(id),
    product_id INTEGER NOT NULL REFERENCES products(id),
    quantity INTEGER NOT NULL,
    order_date DATE NOT NULL,
    status TEXT NOT NULL
);
CREATE INDEX orders_customer ON orders(customer_id);
CREATE INDEX orders_product ON orders(product_id);
"""
_CITIES: tuple[tuple[str, str], ...] = (
    ("北京", "China"), ("上海", "China"), ("深圳", "China"), ("杭州", "China"), ("成都", "China"),
    ("New York", "USA"), ("San Francisco", "USA"), ("Chicago", "USA"), ("London", "UK"),
    ("Manchester", "UK"), ("Berlin", "Germany"), ("München", "Germany"), ("Paris", "France"),
    ("Tokyo", "Japan"), ("São Paulo", "Brazil"), ("Toronto", "Canada"),
)
_GIVEN = ("Alice", "Bob", "Carol", "David", "Emma", "Frank", "Grace", "Henry", "Iris", "Jack", "Léa", "Zoë")
_FAMILY = ("Smith", "Johnson", "Brown", "Müller", "Martin", "Tanaka", "Silva", "García", "Lee", "Wilson")
_CHINESE_FAMILY = ("王", "李", "张", "刘", "陈", "杨", "赵", "黄")
_CHINESE_GIVEN = ("伟", "芳", "娜", "敏", "静", "磊", "洋", "婷", "强", "军")
_PRODUCTS: tuple[tuple[str, str, float], ...] = (
    ("Laptop Pro 14", "Electronics", 1299.0), ("Wireless Mouse", "Electronics", 25.0),
    ("USB-C Hub", "Electronics", 45.0), ("Noise-Cancelling Headphones", "Electronics", 199.0),
    ("4K Monitor", "Electronics", 349.0), ("Mechanical Keyboard", "Electronics", 89.0),
    ("Standing Desk", "Furniture", 499.0), ("Office Chair", "Furniture", 259.0),
    ("Bookshelf", "Furniture", 120.0), ("Desk Lamp", "Furniture", 35.0),
    ("Green Tea 绿茶", "Grocery", 12.5), ("Coffee Beans", "Grocery", 18.0),
    ("Dark Chocolate", "Grocery", 4.5), ("Olive Oil", "Grocery", 9.9),
    ("Running Shoes", "Sports", 110.0), ("Yoga Mat", "Sports", 30.0),
    ("Tennis Racket", "Sports", 150.0), ("Water Bottle", "Sports", 15.0),
    ("Notebook", "Stationery", 3.2), ("Fountain Pen", "Stationery", 49.0),
)
_START = date(2023, 1, 1)


def build_demo_database(path: str) -> None:
    """Create the demo SQLite file at `path` unless it already holds the demo tables (atomic rebuild)."""
    if os.path.exists(path) and _has_demo_tables(path):
        return
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    temp_path = f"{path}.{os.getpid()}.tmp"
    if os.path.exists(temp_path):
        os.remove(temp_path)
    with closing(sqlite3.connect(temp_path)) as conn:
        conn.executescript(_SCHEMA)
        _fill(conn, random.Random(DEMO_SEED))
        conn.commit()
    os.replace(temp_path, path)


def _has_demo_tables(path: str) -> bool:
    try:
        with closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as conn:
            rows = conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'").fetchall()
    except sqlite3.Error:
        return False
    return set(DEMO_ROW_COUNTS) <= {row[0] for row in rows}


def _fill(conn: sqlite3.Connection, rng: random.Random) -> None:
    customers = _customers(rng)
    conn.executemany("INSERT INTO customers VALUES (?, ?, ?, ?, ?)", customers)
    conn.executemany(
        "INSERT INTO products VALUES (?, ?, ?, ?)",
        [(i, name, category, price) for i, (name, category, price) in enumerate(_PRODUCTS, start=1)],
    )
    signups = [date.fromisoformat(row[4]) for row in customers]
    conn.executemany("INSERT INTO orders VALUES (?, ?, ?, ?, ?, ?)", _orders(rng, signups))


def _customers(rng: random.Random) -> list[tuple[int, str, str, str, str]]:
    rows = []
    for i in range(1, DEMO_ROW_COUNTS["customers"] + 1):
        city, country = rng.choice(_CITIES)
        if country == "China":
            name = rng.choice(_CHINESE_FAMILY) + rng.choice(_CHINESE_GIVEN)
        else:
            name = f"{rng.choice(_GIVEN)} {rng.choice(_FAMILY)}"
        signup = _START + timedelta(days=rng.randrange(365))
        rows.append((i, name, city, country, signup.isoformat()))
    return rows


def _orders(rng: random.Random, signups: list[date]) -> list[tuple[int, int, int, int, str, str]]:
    """Orders placed on or after the customer's signup, over the two years from the first signup."""
    rows = []
    for i in range(1, DEMO_ROW_COUNTS["orders"] + 1):
        customer = rng.randint(1, DEMO_ROW_COUNTS["customers"])
        product = rng.randint(1, DEMO_ROW_COUNTS["products"])
        quantity = rng.choice((1, 1, 1, 2, 2, 3, 5))
        signup = signups[customer - 1]
        ordered = signup + timedelta(days=rng.randrange((_START + timedelta(days=2 * 365) - signup).days))
        rows.append((i, customer, product, quantity, ordered.isoformat(), rng.choice(ORDER_STATUSES)))
    return rows
