"""The seed stack, for comparison: the article's FastAPI + SQLModel + asyncpg service.

`bench/run.py --stack seed` serves it (gunicorn, 2 uvicorn workers) and loads it with
the same wrk scripts as our app. Its requirements are in bench/seed_stack.txt, kept out
of the project's own lock. Rebuilt from the article's prose (the copy it was built from
had no code listings), with its choices: one AsyncSession per request from a default
engine pool, a HeroesCRUD class, commit + refresh after each write, the article's table
(an index on uuid only, no unique nickname) and no authentication. Its list is the
first 20 heroes, newest first.

    python bench/seed_stack.py create-tables   # in DATABASE_URL's database
"""

import asyncio
import enum
import os
import sys
import uuid as uuid_pkg
from datetime import UTC, datetime

from fastapi import APIRouter, Depends, FastAPI, HTTPException, status
from pydantic import BaseModel
from sqlalchemy import Column, DateTime, Enum, select, text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker, create_async_engine
from sqlmodel import Field, SQLModel

DATABASE_URL = os.environ["DATABASE_URL"].replace("postgres://", "postgresql+asyncpg://", 1)


# app/core/models.py
class UUIDModel(SQLModel):
    uuid: uuid_pkg.UUID = Field(
        default_factory=uuid_pkg.uuid4,
        primary_key=True,
        index=True,
        nullable=False,
        sa_column_kwargs={"server_default": text("gen_random_uuid()"), "unique": True},
    )


def utcnow() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)  # the article's columns are `timestamp`


class TimestampModel(SQLModel):
    created_at: datetime = Field(
        default_factory=utcnow,
        nullable=False,
        sa_type=DateTime(timezone=False),
        sa_column_kwargs={"server_default": text("current_timestamp(0)")},
    )
    updated_at: datetime = Field(
        default_factory=utcnow,
        nullable=False,
        sa_type=DateTime(timezone=False),
        sa_column_kwargs={
            "server_default": text("current_timestamp(0)"),
            "onupdate": text("current_timestamp(0)"),
        },
    )


class StatusMessage(BaseModel):
    status: bool
    message: str


# app/heroes/models.py
class HeroRole(enum.StrEnum):
    mage = "mage"
    assassin = "assassin"
    warrior = "warrior"
    priest = "priest"
    tank = "tank"


class HeroBase(SQLModel):
    nickname: str = Field(max_length=255, nullable=False)
    role: HeroRole | None = Field(
        default=None, sa_column=Column(Enum(HeroRole, name="hrs_role"), nullable=True)
    )


class Hero(HeroBase, UUIDModel, TimestampModel, table=True):
    __tablename__ = "hrs_heroes"


class HeroRead(HeroBase, UUIDModel):
    created_at: datetime
    updated_at: datetime


class HeroCreate(HeroBase):
    pass


class HeroPatch(HeroBase):
    nickname: str | None = Field(default=None, max_length=255)
    role: HeroRole | None = None


# app/core/db.py
engine = create_async_engine(DATABASE_URL, echo=False)
async_session_maker = async_sessionmaker(engine, class_=AsyncSession, expire_on_commit=False)


async def get_async_session():
    async with async_session_maker() as session:
        yield session


# app/heroes/crud.py
class HeroesCRUD:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def create(self, data: HeroCreate) -> Hero:
        hero = Hero(**data.model_dump())
        self.session.add(hero)
        await self.session.commit()
        await self.session.refresh(hero)
        return hero

    async def get(self, hero_id: uuid_pkg.UUID) -> Hero:
        result = await self.session.execute(select(Hero).where(Hero.uuid == hero_id))
        hero = result.scalar_one_or_none()
        if hero is None:
            raise HTTPException(status.HTTP_404_NOT_FOUND, "The hero hasn't been found!")
        return hero

    async def list(self) -> list[Hero]:
        result = await self.session.execute(select(Hero).order_by(Hero.created_at.desc()).limit(20))
        return list(result.scalars())

    async def patch(self, hero_id: uuid_pkg.UUID, data: HeroPatch) -> Hero:
        hero = await self.get(hero_id)
        for field, value in data.model_dump(exclude_unset=True).items():
            setattr(hero, field, value)
        self.session.add(hero)
        await self.session.commit()
        await self.session.refresh(hero)
        return hero


# app/heroes/dependencies.py and api.py
async def get_heroes_crud(session: AsyncSession = Depends(get_async_session)) -> HeroesCRUD:  # noqa: B008
    return HeroesCRUD(session)


router = APIRouter()
Crud = Depends(get_heroes_crud)


@router.post("", response_model=HeroRead, status_code=status.HTTP_201_CREATED)
async def create_hero(data: HeroCreate, heroes: HeroesCRUD = Crud) -> Hero:
    return await heroes.create(data)


@router.get("", response_model=list[HeroRead])
async def list_heroes(heroes: HeroesCRUD = Crud) -> list[Hero]:
    return await heroes.list()


@router.get("/{hero_id}", response_model=HeroRead)
async def get_hero(hero_id: uuid_pkg.UUID, heroes: HeroesCRUD = Crud) -> Hero:
    return await heroes.get(hero_id)


@router.patch("/{hero_id}", response_model=HeroRead)
async def patch_hero(hero_id: uuid_pkg.UUID, data: HeroPatch, heroes: HeroesCRUD = Crud) -> Hero:
    return await heroes.patch(hero_id, data)


# app/main.py
app = FastAPI(title="Heroes App (seed)")


@app.get("/api/v1/health")
async def health() -> dict:
    return {"name": "Heroes App (seed)", "version": "0.1.0"}


app.include_router(router, prefix="/api/v1/heroes")


async def create_tables() -> None:
    async with engine.begin() as connection:
        await connection.run_sync(SQLModel.metadata.create_all)
    await engine.dispose()


if __name__ == "__main__" and sys.argv[1:] == ["create-tables"]:
    asyncio.run(create_tables())
